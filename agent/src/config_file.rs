//! The config file the daemon was started with, as a resource with one owner: edits from
//! the installer's console (`PUT /api/cameras/{id}/zones`) go through here.
//!
//! An edit is format-preserving (`toml_edit`: comments, order, spacing and every other
//! section stay as the installer wrote them; only the camera's `[[cameras.zones]]` tables are
//! replaced, each keeping the comment above it when its id stays), validated exactly as
//! `gridwatch check` validates (the whole new text is parsed by [`Config::parse`]), and
//! written atomically: a temporary file beside it, fsync, the current file kept as
//! `<name>.bak`, rename, fsync of the directory. An edit that fails anywhere leaves the
//! file as it was. Edits are serialised, so concurrent saves leave one of them, whole.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table};

use crate::config::Config;

/// At most this many zones per camera through the editor.
pub const MAX_ZONES: usize = 64;
/// Longest string value accepted from the editor (a zone's name or description).
const MAX_STRING: usize = 500;

/// Why an edit was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("no camera `{0}` in the config file")]
    UnknownCamera(String),
    /// The request itself is malformed (not zones, hostile strings, too many).
    #[error("{0}")]
    BadInput(String),
    /// The edited config does not pass validation: the message of `gridwatch check`.
    #[error("{0}")]
    Invalid(String),
    #[error("cannot write the config file: {0}")]
    Io(String),
}

pub struct ConfigFile {
    path: PathBuf,
    writing: Mutex<()>,
}

impl ConfigFile {
    pub fn new(path: &Path) -> ConfigFile {
        ConfigFile {
            path: path.to_path_buf(),
            writing: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Camera `camera_id`'s zones as the file has them (durations as written, every key), as
    /// JSON: what the editor starts from and sends back, so keys it shows no field for are
    /// kept. `None` when the file has no such camera or cannot be read.
    pub fn zones_as_written(&self, camera_id: &str) -> Option<Value> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let table: toml::Table = toml::from_str(&text).ok()?;
        let camera = table
            .get("cameras")?
            .as_array()?
            .iter()
            .find(|c| c.get("id").and_then(toml::Value::as_str) == Some(camera_id))?;
        let zones = camera
            .get("zones")
            .cloned()
            .unwrap_or(toml::Value::Array(Vec::new()));
        serde_json::to_value(zones).ok()
    }

    /// Replaces camera `camera_id`'s zones with `zones` (JSON objects with the keys of
    /// `[[cameras.zones]]`, rule tables as nested objects), validates as `check` does (the
    /// file, then the camera's zones and rules against `model`'s labels) and writes the
    /// file. Returns the new config.
    pub fn replace_zones(
        &self,
        camera_id: &str,
        zones: &[Value],
        model: &crate::model::ModelManifest,
    ) -> Result<Config, EditError> {
        let _writing = self
            .writing
            .lock()
            .map_err(|_| EditError::Io("a previous save failed midway".into()))?;
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| EditError::Io(format!("{}: {e}", self.path.display())))?;
        let edited = zones_replaced(&text, camera_id, zones)?;
        // The file path is the server's business; the field and the reason are the user's.
        let invalid = |e: crate::config::ConfigError| {
            let message = e.to_string();
            let shown = message
                .strip_prefix(&format!("{}:", self.path.display()))
                .unwrap_or(&message)
                .to_string();
            EditError::Invalid(shown)
        };
        let config = Config::parse(&edited, &self.path).map_err(invalid)?;
        if let Some(camera) = config.camera(camera_id) {
            crate::analytics::CameraAnalytics::new(&config, camera, model).map_err(invalid)?;
        }
        // Belt and braces: the edit touched this camera's zones and nothing else.
        let before = Config::parse(&text, &self.path).ok();
        if let Some(before) = &before {
            for (old, new) in before.cameras.iter().zip(&config.cameras) {
                if old.id != new.id || (old.id != camera_id && old.zones != new.zones) {
                    return Err(EditError::Io(format!(
                        "the edit would have changed camera {}; nothing written",
                        old.id
                    )));
                }
            }
        }
        write_atomically(&self.path, edited.as_bytes())
            .map_err(|e| EditError::Io(format!("{}: {e}", self.path.display())))?;
        Ok(config)
    }
}

/// `text` with camera `camera_id`'s zones replaced by `zones`.
fn zones_replaced(text: &str, camera_id: &str, zones: &[Value]) -> Result<String, EditError> {
    if zones.len() > MAX_ZONES {
        return Err(EditError::BadInput(format!(
            "at most {MAX_ZONES} zones per camera, got {}",
            zones.len()
        )));
    }
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| EditError::Io(format!("the config file no longer parses: {e}")))?;
    let cameras = doc
        .get_mut("cameras")
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| EditError::UnknownCamera(camera_id.to_string()))?;
    let camera = cameras
        .iter_mut()
        .find(|c| c.get("id").and_then(Item::as_str) == Some(camera_id))
        .ok_or_else(|| EditError::UnknownCamera(camera_id.to_string()))?;
    let old: Vec<Table> = camera
        .get("zones")
        .and_then(Item::as_array_of_tables)
        .map(|a| a.iter().cloned().collect())
        .unwrap_or_default();
    let mut tables = ArrayOfTables::new();
    for (i, zone) in zones.iter().enumerate() {
        let object = zone
            .as_object()
            .ok_or_else(|| EditError::BadInput(format!("zones[{i}] is not an object")))?;
        let mut table = Table::new();
        for (key, value) in object {
            check_key(key, &format!("zones[{i}]"))?;
            if let Some(item) = to_item(value, &format!("zones[{i}].{key}"), key == "polygon")? {
                table.insert(key, item);
            }
        }
        // The comment above a zone that keeps its id stays with it.
        let id = object.get("id").and_then(Value::as_str);
        if let Some(previous) = old
            .iter()
            .find(|t| id.is_some() && t.get("id").and_then(Item::as_str) == id)
        {
            *table.decor_mut() = previous.decor().clone();
        }
        tables.push(table);
    }
    if tables.is_empty() {
        camera.remove("zones");
    } else {
        camera.insert("zones", Item::ArrayOfTables(tables));
    }
    Ok(doc.to_string())
}

fn check_key(key: &str, at: &str) -> Result<(), EditError> {
    if key.is_empty()
        || key.len() > 64
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(EditError::BadInput(format!(
            "{at}: `{}` is not a config key",
            key.chars().take(64).collect::<String>()
        )));
    }
    Ok(())
}

/// A JSON value as TOML: objects become tables (rule sections), arrays inline arrays,
/// numbers integers or floats (always floats in a polygon), null nothing.
fn to_item(value: &Value, at: &str, floats: bool) -> Result<Option<Item>, EditError> {
    Ok(match value {
        Value::Null => None,
        Value::Object(map) => {
            let mut table = Table::new();
            for (key, v) in map {
                check_key(key, at)?;
                if let Some(item) = to_item(v, &format!("{at}.{key}"), false)? {
                    table.insert(key, item);
                }
            }
            Some(Item::Table(table))
        }
        other => Some(Item::Value(to_value(other, at, floats, 0)?)),
    })
}

fn to_value(
    value: &Value,
    at: &str,
    floats: bool,
    depth: usize,
) -> Result<toml_edit::Value, EditError> {
    if depth > 4 {
        return Err(EditError::BadInput(format!("{at}: nested too deeply")));
    }
    Ok(match value {
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), floats) {
            (Some(i), false) => i.into(),
            _ => n
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| {
                    EditError::BadInput(format!("{at}: {n} is not a number TOML can hold"))
                })?
                .into(),
        },
        Value::String(s) => {
            if s.chars().count() > MAX_STRING {
                return Err(EditError::BadInput(format!(
                    "{at}: longer than {MAX_STRING} characters"
                )));
            }
            if s.chars().any(|c| c.is_control() && c != '\n') {
                return Err(EditError::BadInput(format!(
                    "{at}: control characters are not allowed"
                )));
            }
            s.as_str().into()
        }
        Value::Array(items) => {
            let mut array = Array::new();
            for (k, item) in items.iter().enumerate() {
                array.push(to_value(item, &format!("{at}[{k}]"), floats, depth + 1)?);
            }
            array.into()
        }
        Value::Object(map) => {
            let mut table = InlineTable::new();
            for (key, v) in map {
                check_key(key, at)?;
                if !v.is_null() {
                    table.insert(key, to_value(v, &format!("{at}.{key}"), false, depth + 1)?);
                }
            }
            toml_edit::Value::InlineTable(table)
        }
        Value::Null => return Err(EditError::BadInput(format!("{at}: null inside a list"))),
    })
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file: a
/// temporary file in the same directory, fsync, the old file hard-linked as `<name>.bak`,
/// rename over, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let temporary = dir.join(format!(".{name}.saving"));
    {
        let mut file = std::fs::File::create(&temporary)?;
        // The config holds secrets' paths and the cameras' URLs: keep the old file's mode.
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    let backup = dir.join(format!("{name}.bak"));
    if path.exists() {
        std::fs::copy(path, &backup)?;
        std::fs::File::open(&backup)?.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &str = r#"# The compound's cameras.
[site]
id = "demo"   # used in topics
grid_code = "440305001001"

[[cameras]]
id = "gate"
url = "rtsp://10.0.0.2/stream1"

# The fire lane by the east gate.
[[cameras.zones]]
id = "lane"
polygon = [[0.0, 0.5], [1.0, 0.5], [1.0, 1.0]]

[cameras.zones.illegal_parking]
dwell = "180s"

[[cameras]]
id = "hall"
url = "rtsp://10.0.0.3/stream1"  # indoor

[[cameras.zones]]
id = "room"
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
"#;

    fn model() -> crate::model::ModelManifest {
        crate::model::ModelManifest::resolve("yolox_nano", Path::new(".")).unwrap()
    }

    fn saved(text: &str, zones: Value) -> Result<(String, Config), EditError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        let file = ConfigFile::new(&path);
        let config = file.replace_zones("gate", zones.as_array().unwrap(), &model())?;
        Ok((std::fs::read_to_string(&path).unwrap(), config))
    }

    #[test]
    fn a_new_zone_is_written_with_everything_else_kept() {
        let zones = json!([
            {"id": "lane", "polygon": [[0, 0.5], [1, 0.5], [1, 1]],
             "illegal_parking": {"dwell": "120s", "grace": "20s"}},
            {"id": "door", "name": "单元门", "polygon": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.4]],
             "objects": ["two_wheeler"], "fly_wire_charging": {"dwell": "60s"}}
        ]);
        let (text, config) = saved(TEXT, zones).unwrap();
        for kept in [
            "# The compound's cameras.",
            "id = \"demo\"   # used in topics",
            "# indoor",
            "# The fire lane by the east gate.",
        ] {
            assert!(text.contains(kept), "{kept}:\n{text}");
        }
        let gate = &config.cameras[0];
        assert_eq!(gate.zones.len(), 2);
        assert_eq!(
            gate.zones[0]
                .illegal_parking
                .as_ref()
                .unwrap()
                .dwell
                .as_secs(),
            120
        );
        assert_eq!(gate.zones[1].name, "单元门");
        assert_eq!(
            config.cameras[1].zones[0].id, "room",
            "the other camera keeps its zone"
        );
        // The comment stays above its zone, and the new zone belongs to the gate camera.
        assert!(text.find("# The fire lane").unwrap() < text.find("id = \"lane\"").unwrap());
        assert!(text.find("id = \"door\"").unwrap() < text.find("id = \"hall\"").unwrap());
    }

    #[test]
    fn an_invalid_zone_or_hostile_input_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, TEXT).unwrap();
        let file = ConfigFile::new(&path);
        let two_points = json!([{"id": "lane", "polygon": [[0.0, 0.5], [1.0, 0.5]]}]);
        let err = file
            .replace_zones("gate", two_points.as_array().unwrap(), &model())
            .unwrap_err();
        assert!(matches!(err, EditError::Invalid(_)), "{err}");
        assert!(
            err.to_string().contains("cameras[0].zones[0].polygon"),
            "{err}"
        );
        assert!(
            !err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
        for bad in [
            json!([{"id": "x", "polygon": [[0, 0], [1, 0], [1, 1]], "objects": ["dragons"]}]),
            json!([{"id": "x\u{0}y", "polygon": [[0, 0], [1, 0], [1, 1]]}]),
            json!([{"id": "x", "polygon": [[0, 0], [1, 0], [1, 1]], "url": "rtsp://evil"}]),
            json!([{"id": "x", "polygon": [[0, 0], [1, 0], [1, 1]], "Weird Key": 1}]),
            json!(["not a zone"]),
            json!([{"id": "x", "name": "n".repeat(600), "polygon": [[0, 0], [1, 0], [1, 1]]}]),
        ] {
            assert!(
                file.replace_zones("gate", bad.as_array().unwrap(), &model())
                    .is_err(),
                "{bad}"
            );
        }
        assert!(matches!(
            file.replace_zones("nope", &[], &model()),
            Err(EditError::UnknownCamera(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), TEXT, "untouched");
        assert!(!dir.path().join("config.toml.bak").exists());
    }

    #[test]
    fn zones_as_written_round_trip_through_the_editor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, TEXT).unwrap();
        let file = ConfigFile::new(&path);
        let zones = file.zones_as_written("gate").unwrap();
        assert_eq!(zones[0]["illegal_parking"]["dwell"], "180s");
        let config = file
            .replace_zones("gate", zones.as_array().unwrap(), &model())
            .unwrap();
        assert_eq!(
            config.cameras[0].zones[0]
                .illegal_parking
                .as_ref()
                .unwrap()
                .dwell
                .as_secs(),
            180
        );
        assert!(file.zones_as_written("nope").is_none());
    }

    #[test]
    fn a_save_keeps_the_previous_file_as_a_backup_and_no_zones_removes_the_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, TEXT).unwrap();
        let config = ConfigFile::new(&path)
            .replace_zones("gate", &[], &model())
            .unwrap();
        assert!(config.cameras[0].zones.is_empty());
        assert_eq!(config.cameras[1].zones.len(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("config.toml.bak")).unwrap(),
            TEXT
        );
    }

    #[test]
    fn concurrent_saves_leave_one_whole_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, TEXT).unwrap();
        let file = std::sync::Arc::new(ConfigFile::new(&path));
        let threads: Vec<_> = (0..8)
            .map(|k| {
                let file = std::sync::Arc::clone(&file);
                std::thread::spawn(move || {
                    let zones =
                        json!([{"id": format!("z{k}"), "polygon": [[0, 0], [1, 0], [1, 1]]}]);
                    file.replace_zones("gate", zones.as_array().unwrap(), &model())
                        .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let config = Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(config.cameras[0].zones.len(), 1);
        assert!(config.cameras[0].zones[0].id.starts_with('z'));
    }
}
