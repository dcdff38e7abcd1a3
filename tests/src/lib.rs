//! Helpers for gridwatch's end-to-end tests: where the binary, the shared data and the
//! project-local Python are, and running the CLI with its output captured.
//!
//! The tests use real components only: the real `gridwatch` binary, FFmpeg (library and
//! CLI), ONNX Runtime with the real model, and the shared sample media.

pub mod broker;
pub mod rtsp;
pub mod scenario;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

/// The repository root (this package lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn dir_from_env(var: &str, default_sub: &str) -> PathBuf {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join("../shared").join(default_sub),
    }
}

/// `$GRIDWATCH_MEDIA_DIR`, else `../shared/media` beside the checkout.
pub fn media_dir() -> PathBuf {
    dir_from_env("GRIDWATCH_MEDIA_DIR", "media")
}

/// A sample media file; panics with a hint when it is missing.
pub fn media(name: &str) -> PathBuf {
    let path = media_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh (it fetches the sample media)",
        path.display()
    );
    path
}

/// `$GRIDWATCH_MODEL_DIR`, else `../shared/models` beside the checkout.
pub fn model_dir() -> PathBuf {
    dir_from_env("GRIDWATCH_MODEL_DIR", "models")
}

pub fn model_path() -> PathBuf {
    model_dir().join("yolox_nano.onnx")
}

/// The `gridwatch` binary of the same profile as the running test (`GRIDWATCH_BIN`
/// overrides). scripts/test.sh builds it before running the tests.
pub fn gridwatch_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("GRIDWATCH_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // Tests live in target/<profile>/deps/, the report binary in target/<profile>/.
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("gridwatch"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "gridwatch is not built next to {}: run `cargo build -p gridwatch` (scripts/test.sh does) before the tests",
                exe.display()
            )
        })
}

/// The project-local Python with onnxruntime, numpy and OpenCV (from scripts/setup.sh).
pub fn python() -> PathBuf {
    let local = std::env::var_os("GRIDWATCH_LOCAL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".local"));
    let python = local.join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run scripts/setup.sh",
        python.display()
    );
    python
}

/// A `gridwatch` command with a clean, predictable environment: logs at warn so stderr
/// holds only what matters to the test.
pub fn gridwatch() -> Command {
    let mut cmd = Command::new(gridwatch_bin());
    cmd.env("GRIDWATCH_LOG", "warn");
    cmd.env_remove("ORT_DYLIB_PATH");
    cmd
}

/// The same command (arguments, environment, directory) with another program, e.g. a
/// wrapper running a cross-compiled gridwatch under qemu.
pub fn with_program(command: &mut Command, program: &Path) -> Command {
    let mut other = Command::new(program);
    other.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => other.env(key, v),
            None => other.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        other.current_dir(dir);
    }
    other
}

/// `gridwatch replay --config C --input I --no-progress --out O [extra...]`, not yet run.
pub fn replay_command(config: &Path, input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = gridwatch();
    cmd.arg("replay")
        .arg("--config")
        .arg(config)
        .arg("--input")
        .arg(input)
        .arg("--no-progress")
        .arg("--out")
        .arg(out)
        .args(extra);
    cmd
}

/// Output of a finished command, with helpers for assertions.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// The `gridwatch: error: ...` line; asserts there is exactly one and nothing that
    /// looks like a panic or backtrace.
    pub fn error_line(&self) -> String {
        let stderr = self.stderr();
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "panic output: {stderr}"
        );
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("gridwatch: error:"))
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line, stderr was:\n{stderr}"
        );
        lines[0].to_string()
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Run { output }
}

/// Runs a command that must succeed; returns its output.
pub fn run_ok(cmd: &mut Command) -> Run {
    let run = run(cmd);
    assert!(
        run.output.status.success(),
        "{cmd:?} failed with {}:\n{}",
        run.output.status,
        run.stderr()
    );
    run
}

/// A minimal valid config in `dir`; `extra` is appended (more tables or camera keys).
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        "[site]\nid = \"test-site\"\ngrid_code = \"440305001001\"\n\n[storage]\ndata_dir = \"data\"\n\n{extra}\n"
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Parses JSON Lines.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

/// Runs the ffmpeg CLI with the given arguments (quiet, overwrite), asserting success.
pub fn ffmpeg(args: &[&str]) {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-y"]).args(args);
    run_ok(&mut cmd);
}

/// `out`, derived by `derive` (given the path to write) unless it is there already. Tests
/// that need the same file at once wait for the one deriving it rather than encode it again
/// (two encodes of the far-parking 1080p H.265 clip cost CI ten minutes of a core); the
/// file appears whole, by a rename, to other test processes too.
pub fn derive_once(out: &Path, derive: impl FnOnce(&Path)) -> PathBuf {
    type Locks = std::sync::Mutex<HashMap<PathBuf, Arc<std::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    if out.is_file() {
        return out.to_path_buf();
    }
    let lock = {
        let mut locks = LOCKS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(locks.entry(out.to_path_buf()).or_default())
    };
    let _deriving = lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if out.is_file() {
        return out.to_path_buf();
    }
    // Named for this process, and ending as `out` does (ffmpeg picks its muxer by it).
    let name = out.file_name().expect("a file name").to_string_lossy();
    let partial = out.with_file_name(format!(".partial-{}-{name}", std::process::id()));
    derive(&partial);
    std::fs::rename(&partial, out).expect("move the derived file into place");
    out.to_path_buf()
}

/// IoU of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f64], b: &[f64]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f64]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// A JSON box `[x1, y1, x2, y2]` as floats.
pub fn json_box(value: &serde_json::Value) -> Vec<f64> {
    value
        .as_array()
        .expect("box is an array")
        .iter()
        .map(|v| v.as_f64().expect("box coordinate is a number"))
        .collect()
}

/// Validates an incident event (as emitted; a JSON Lines `type` tag is ignored) against
/// docs/schema/incident-v1.json. Returns the validation errors, empty when valid.
pub fn schema_errors(event: &serde_json::Value) -> Vec<String> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let mut event = event.clone();
    if let Some(map) = event.as_object_mut() {
        map.remove("type");
    }
    errors_against(&VALIDATOR, "docs/schema/incident-v1.json", &event)
}

/// Validates a daily summary (`stats/daily`) against docs/schema/daily-summary-v1.json.
pub fn summary_schema_errors(summary: &serde_json::Value) -> Vec<String> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    errors_against(&VALIDATOR, "docs/schema/daily-summary-v1.json", summary)
}

fn errors_against(
    validator: &OnceLock<jsonschema::Validator>,
    schema: &str,
    value: &serde_json::Value,
) -> Vec<String> {
    let validator = validator.get_or_init(|| {
        let path = repo_root().join(schema);
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read the schema"))
                .expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema compiles")
    });
    validator
        .iter_errors(value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// (class id, score, box) of one detection.
pub type Det = (u64, f64, Vec<f64>);

pub fn detections_of(list: &serde_json::Value) -> Vec<Det> {
    list.as_array()
        .expect("detections array")
        .iter()
        .map(|d| {
            (
                d["class_id"].as_u64().expect("class_id"),
                d["score"].as_f64().expect("score"),
                json_box(&d["box"]),
            )
        })
        .collect()
}

/// Matches each reference detection to the best unused Rust detection of the same class and
/// checks parity's tolerances (IoU >= 0.99, |score difference| <= 1e-3). Returns a description of the first mismatch.
pub fn compare_detections(context: &str, reference: &[Det], ours: &[Det]) -> Result<(), String> {
    if reference.len() != ours.len() {
        return Err(format!(
            "{context}: reference has {} detections, gridwatch {}:\n  ref {reference:?}\n  ours {ours:?}",
            reference.len(),
            ours.len()
        ));
    }
    let mut used = vec![false; ours.len()];
    for (class, score, bbox) in reference {
        let best = ours
            .iter()
            .enumerate()
            .filter(|(i, d)| !used[*i] && d.0 == *class)
            .map(|(i, d)| (i, iou(bbox, &d.2)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some((i, overlap)) = best else {
            return Err(format!(
                "{context}: class {class} missing from gridwatch: {ours:?}"
            ));
        };
        used[i] = true;
        let score_diff = (ours[i].1 - score).abs();
        if overlap < 0.99 || score_diff > 1e-3 {
            return Err(format!(
                "{context}: class {class}: IoU {overlap:.4}, score {score:.4} vs {:.4}",
                ours[i].1
            ));
        }
    }
    Ok(())
}

/// A real small filesystem mounted for a test (a full disk is a filesystem that is full, not
/// a directory made unwritable): tmpfs where the machine allows mounting, else an ext4 image
/// on a loop device. Unmounted when dropped.
pub struct SmallFs {
    pub path: PathBuf,
    /// "tmpfs" or "ext4 image on a loop device".
    pub kind: &'static str,
    image: Option<PathBuf>,
}

impl SmallFs {
    /// Mounts `mib` MiB at `path` (created). `Err` says why neither kind could be made.
    pub fn mount(path: &Path, mib: u32) -> Result<SmallFs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let tmpfs = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0777"),
                "tmpfs",
            ])
            .arg(path)
            .output();
        let tmpfs_error = match tmpfs {
            Ok(o) if o.status.success() => {
                return Ok(SmallFs {
                    path: path.to_path_buf(),
                    kind: "tmpfs",
                    image: None,
                });
            }
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
            Err(e) => e.to_string(),
        };
        let image = path.with_extension("img");
        let made = Command::new("truncate")
            .args(["-s", &format!("{mib}M")])
            .arg(&image)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&image)
                .status()
                .is_ok_and(|s| s.success());
        let loop_mount = made
            && Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
        if loop_mount {
            return Ok(SmallFs {
                path: path.to_path_buf(),
                kind: "ext4 image on a loop device",
                image: Some(image),
            });
        }
        let _ = std::fs::remove_file(&image);
        Err(format!(
            "cannot mount a small filesystem here: tmpfs: {tmpfs_error}; a loop-mounted ext4 image failed too (needs root and loop devices)"
        ))
    }

    /// Free bytes on it.
    pub fn free(&self) -> u64 {
        gridwatch::metrics::disk_free(&self.path).unwrap_or(0)
    }

    /// Fills it with `name` until nothing is left (another program filling the disk).
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write as _;
        let path = self.path.join(name);
        let mut file = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0x5au8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        // The last partial chunk, byte by byte, until the filesystem says no.
        while file.write_all(&chunk[..4096]).is_ok() {}
        while file.write_all(&chunk[..1]).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
    }
}
