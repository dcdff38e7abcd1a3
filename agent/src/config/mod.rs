//! The agent's configuration: one TOML file, read strictly.
//!
//! Unknown keys are errors (a typo must not silently fall back to a default), and every error
//! names the file, line and column and the dotted path of the field, so an installer editing
//! the file over SSH can fix it without guessing. `gridwatch check` runs exactly this code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::FixedOffset;
use serde::Deserialize;
use serde_path_to_error::Segment;

mod actions;
mod camera;
mod detector;
mod evidence;
mod incidents;
mod mqtt;
mod site;
mod web;
mod zone;

pub use actions::*;
pub use camera::*;
pub use detector::*;
pub use evidence::*;
pub use incidents::*;
pub use mqtt::*;
pub use site::*;
pub use web::*;
pub use zone::*;

/// A validation failure: the field's path as serde names it (`["cameras", "0", "url"]`) and
/// what is wrong with it. Each section validates its own fields with paths relative to
/// itself; [`Config::validate`] puts them under the section's place in the file.
type Invalid = (Vec<String>, String);

/// Fails at `path`, relative to the section being validated.
fn fail(path: &[&str], message: impl Into<String>) -> Result<(), Invalid> {
    Err((path.iter().map(|s| s.to_string()).collect(), message.into()))
}

/// Puts a section's failure under `prefix` (`["cameras", "2"]`).
fn under<'a>(prefix: &'a [&'a str]) -> impl FnOnce(Invalid) -> Invalid + 'a {
    move |(path, message)| {
        let mut full: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        full.extend(path);
        (full, message)
    }
}

/// The smallest object a zone must see when its config does not say: 8 % of the picture's
/// height (86 px on a 1080p picture; a car ~30 m from a 4 mm lens mounted at 6 m).
pub const DEFAULT_MIN_OBJECT_HEIGHT: f32 = 0.08;

/// Most regions (inferences per sampled frame) one camera may cost.
pub const MAX_REGIONS: usize = 16;

/// A config problem, already formatted as `file:line:col: field: what is wrong`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Path of the file this was read from; set by [`Config::load`].
    #[serde(skip)]
    pub source_path: PathBuf,
    /// The file's text, so errors found later (against the model) can point into it.
    #[serde(skip)]
    pub source_text: String,
    pub site: SiteConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub detector: DetectorConfig,
    #[serde(default)]
    pub tracker: TrackerConfig,
    #[serde(default)]
    pub incidents: IncidentsConfig,
    /// Platform categories (大类/中类/小类) per incident kind; defaults by name.
    #[serde(default)]
    pub categories: CategoriesConfig,
    /// Delivery to the grid platform; without it, incidents go to the store only.
    pub mqtt: Option<MqttConfig>,
    #[serde(default)]
    pub evidence: EvidenceConfig,
    /// The HTTP API and review page; without it, no HTTP server runs.
    pub web: Option<WebConfig>,
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// HTTP(S) POSTs on incidents: a relay box, a WeCom or DingTalk group robot.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
}

fn default_true() -> bool {
    true
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|err| {
            ConfigError(format!(
                "cannot read config {}: {err}{}",
                path.display(),
                if err.kind() == std::io::ErrorKind::NotFound {
                    " (agent/config.example.toml documents every key)"
                } else {
                    ""
                }
            ))
        })?;
        let text = String::from_utf8(bytes).map_err(|err| {
            let valid = err.utf8_error().valid_up_to();
            let bytes = err.as_bytes();
            // The prefix before the first bad byte is valid UTF-8, so it can be counted.
            let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
            let (line, col) = line_col(prefix, prefix.len());
            ConfigError(format!(
                "{}:{line}:{col}: the file is not UTF-8 (byte 0x{:02x}); save it as UTF-8",
                path.display(),
                bytes.get(valid).copied().unwrap_or_default()
            ))
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` is used for messages and relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|err| ConfigError(toml_error_at(&origin, text, &err)))?;
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let field = dotted_path(err.path());
            let inner = err.inner();
            let position = inner
                .span()
                .map(|span| line_col(text, span.start))
                .map(|(l, c)| format!(":{l}:{c}"))
                .unwrap_or_default();
            let field = if field.is_empty() || field == "?" {
                String::new()
            } else {
                format!(" {field}:")
            };
            ConfigError(format!("{origin}{position}:{field} {}", inner.message()))
        })?;
        config.source_path = path.to_path_buf();
        config.source_text = text.to_string();
        if let Err((field, message)) = config.validate() {
            return Err(config.error_at(&field, &message));
        }
        config.resolve_paths();
        if let Err((field, message)) = config.check_files() {
            return Err(config.error_at(&field, &message));
        }
        Ok(config)
    }

    /// Files the config names that must exist when the agent starts (after relative paths
    /// are resolved): a TLS setting without its file cannot work at all.
    fn check_files(&self) -> Result<(), (Vec<String>, String)> {
        let Some(tls) = self.mqtt.as_ref().and_then(|m| m.tls.as_ref()) else {
            return Ok(());
        };
        for (name, file) in [
            ("ca_file", &tls.ca_file),
            ("client_cert_file", &tls.client_cert_file),
            ("client_key_file", &tls.client_key_file),
        ] {
            if let Some(path) = file
                && let Err(e) = std::fs::File::open(path)
            {
                return Err((
                    vec!["mqtt".into(), "tls".into(), name.into()],
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        }
        Ok(())
    }

    /// An error about the field at `path` (TOML keys and array indices), located in the
    /// file: `file:line:col: cameras[0].zones[1].objects: message`.
    pub fn error_at(&self, path: &[String], message: &str) -> ConfigError {
        // A field left out (its default failed) is located at the nearest table that is there.
        let position = (1..=path.len())
            .rev()
            .find_map(|len| span_of_path(&self.source_text, &path[..len]))
            .map(|offset| {
                let (l, c) = line_col(&self.source_text, offset);
                format!(":{l}:{c}")
            })
            .unwrap_or_default();
        ConfigError(format!(
            "{}{position}: {}: {message}",
            self.source_path.display(),
            display_path(path)
        ))
    }

    /// An error found after loading (a TLS file that does not parse, a password source
    /// that cannot work) whose message names its field (`mqtt.tls.client_key_file ...`),
    /// located in the file like a validation error.
    pub fn error_naming_field(&self, message: String) -> ConfigError {
        let field = message
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .find(|word| {
                ["mqtt", "web", "evidence", "storage", "detector"]
                    .iter()
                    .any(|section| word.split('.').next() == Some(*section))
            });
        match field {
            Some(field) => {
                let path: Vec<String> = field.split('.').map(String::from).collect();
                self.error_at(&path, &message)
            }
            None => ConfigError(message),
        }
    }

    /// Where evidence files go: `evidence.dir`, else `<data_dir>/evidence`.
    pub fn evidence_dir(&self) -> PathBuf {
        self.evidence
            .dir
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("evidence"))
    }

    /// The directory relative paths in the file are taken from.
    pub fn base_dir(&self) -> PathBuf {
        self.source_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn resolve_paths(&mut self) {
        let base = self.base_dir();
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.storage.data_dir);
        if let Some(dir) = self.evidence.dir.as_mut() {
            resolve(dir);
        }
        if let Some(dir) = self.detector.model_dir.as_mut() {
            resolve(dir);
        }
        if let Some(lib) = self.detector.runtime_library.as_mut() {
            resolve(lib);
        }
        if let Some(w) = self.web.as_mut() {
            for p in [&mut w.token_file, &mut w.password_file]
                .into_iter()
                .flatten()
            {
                resolve(p);
            }
            for r in &mut w.reviewers {
                for p in [&mut r.token_file, &mut r.password_file]
                    .into_iter()
                    .flatten()
                {
                    resolve(p);
                }
            }
        }
        if let Some(m) = self.mqtt.as_mut() {
            if let Some(p) = m.password_file.as_mut() {
                resolve(p);
            }
            if let Some(tls) = m.tls.as_mut() {
                for p in [
                    &mut tls.ca_file,
                    &mut tls.client_cert_file,
                    &mut tls.client_key_file,
                ]
                .into_iter()
                .flatten()
                {
                    resolve(p);
                }
            }
        }
    }

    /// Checks what types alone cannot. Returns the offending field's path (as TOML keys and
    /// array indices, for locating it in the text) and the message.
    /// Every section's own checks, each failure placed at its field.
    fn validate(&self) -> Result<(), Invalid> {
        self.site.validate().map_err(under(&["site"]))?;
        self.detector.validate().map_err(under(&["detector"]))?;
        for (i, camera) in self.cameras.iter().enumerate() {
            let index = i.to_string();
            if let Some(first) = self.cameras[..i].iter().position(|c| c.id == camera.id) {
                return fail(
                    &["cameras", &index, "id"],
                    format!("`{}` is already used by cameras[{first}]", camera.id),
                );
            }
            camera.validate().map_err(under(&["cameras", &index]))?;
        }
        for (j, action) in self.actions.iter().enumerate() {
            let index = j.to_string();
            if self.actions[..j].iter().any(|a| a.id == action.id) {
                return fail(
                    &["actions", &index, "id"],
                    format!("`{}` is used twice", action.id),
                );
            }
            action.validate().map_err(under(&["actions", &index]))?;
        }
        self.incidents.validate().map_err(under(&["incidents"]))?;
        if let Some(mqtt) = &self.mqtt {
            mqtt.validate().map_err(under(&["mqtt"]))?;
        }
        if let Some(web) = &self.web {
            web.validate().map_err(under(&["web"]))?;
        }
        self.evidence.validate().map_err(under(&["evidence"]))?;
        self.tracker.validate().map_err(under(&["tracker"]))
    }

    pub fn camera(&self, id: &str) -> Option<&CameraConfig> {
        self.cameras.iter().find(|c| c.id == id)
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `["cameras", "0", "url"]` as `cameras[0].url`, the way serde's errors name fields.
fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.parse::<usize>().is_ok() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

fn dotted_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// Formats a TOML syntax or type error as `origin:line:col: message`, on one line.
pub fn toml_error_at(origin: &str, text: &str, err: &toml::de::Error) -> String {
    let position = err
        .span()
        .map(|span| {
            let (l, c) = line_col(text, span.start);
            format!(":{l}:{c}")
        })
        .unwrap_or_default();
    let message = err
        .message()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!("{origin}{position}: {message}")
}

/// Byte offset of the value at `path` (table keys and array indices) in the TOML text.
fn span_of_path(text: &str, path: &[String]) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut value = toml::de::DeValue::Table(root.into_inner());
    let mut span = None;
    for segment in path {
        let next = match segment.parse::<usize>() {
            Ok(index) => value.get(index)?,
            Err(_) => value.get(segment.as_str())?,
        };
        span = Some(next.span().start);
        value = next.get_ref().clone();
    }
    span
}

#[cfg(test)]
mod tests;
