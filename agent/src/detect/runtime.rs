//! Finding and loading the ONNX Runtime shared library.
//!
//! gridwatch links ONNX Runtime at run time (`ort` with `load-dynamic`), so one binary works
//! with whatever library the box has and nothing is downloaded at build time. The search is
//! explicit and logged, so an installer can tell which library was used and why.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::assets::checkout_root;

use super::DetectError;

/// Where the library was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeOrigin {
    Config,
    Environment,
    ProjectLocal,
    BesideBinary,
    SystemPath,
}

impl std::fmt::Display for RuntimeOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuntimeOrigin::Config => "detector.runtime_library in the config",
            RuntimeOrigin::Environment => "ORT_DYLIB_PATH",
            RuntimeOrigin::ProjectLocal => "the project-local install from scripts/setup.sh",
            RuntimeOrigin::BesideBinary => "the package's library directory",
            RuntimeOrigin::SystemPath => "the system library path",
        })
    }
}

#[derive(Clone)]
pub struct RuntimeInfo {
    pub path: PathBuf,
    pub origin: RuntimeOrigin,
    pub version: String,
    /// The process-wide ONNX Runtime environment sessions are created in.
    pub environment: ort::environment::Environment,
}

impl std::fmt::Debug for RuntimeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeInfo")
            .field("path", &self.path)
            .field("origin", &self.origin)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

const LIBRARY_NAME: &str = "libonnxruntime.so";

/// Candidates in order: config, `$ORT_DYLIB_PATH`, project-local, beside the binary, system.
fn candidates(configured: Option<&Path>) -> Vec<(PathBuf, RuntimeOrigin)> {
    if let Some(path) = configured {
        // An explicit choice is final: falling back would hide a wrong path.
        return vec![(path.to_path_buf(), RuntimeOrigin::Config)];
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return vec![(PathBuf::from(path), RuntimeOrigin::Environment)];
    }
    let mut out = Vec::new();
    if let Some(local) = std::env::var_os("GRIDWATCH_LOCAL").filter(|v| !v.is_empty()) {
        out.push((
            PathBuf::from(local).join("lib").join(LIBRARY_NAME),
            RuntimeOrigin::ProjectLocal,
        ));
    }
    if let Some(root) = checkout_root() {
        let local = root.join(".local/lib").join(LIBRARY_NAME);
        // Usually the same file as $GRIDWATCH_LOCAL's: one attempt, one line in the error.
        if !out.iter().any(|(p, _)| *p == local) {
            out.push((local, RuntimeOrigin::ProjectLocal));
        }
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        // Packages put it in <prefix>/lib/gridwatch beside <prefix>/bin.
        out.push((
            dir.join("../lib/gridwatch").join(LIBRARY_NAME),
            RuntimeOrigin::BesideBinary,
        ));
    }
    out.push((PathBuf::from(LIBRARY_NAME), RuntimeOrigin::SystemPath));
    out
}

static LOADED: OnceLock<RuntimeInfo> = OnceLock::new();

/// Loads ONNX Runtime once per process. Later calls return the first result (the library
/// cannot be swapped once loaded).
pub fn load(configured: Option<&Path>) -> Result<RuntimeInfo, DetectError> {
    if let Some(info) = LOADED.get() {
        return Ok(info.clone());
    }
    let mut tried = Vec::new();
    for (path, origin) in candidates(configured) {
        let explicit = matches!(origin, RuntimeOrigin::Config | RuntimeOrigin::Environment);
        if origin != RuntimeOrigin::SystemPath && !path.is_file() {
            if explicit {
                return Err(DetectError::Runtime(format!(
                    "cannot load ONNX Runtime from {} (set by {origin}): no such file",
                    path.display()
                )));
            }
            tried.push(format!("{} (missing)", path.display()));
            continue;
        }
        match ort::init_from(&path) {
            Ok(builder) => {
                // Telemetry off: the box must not phone home, and it keeps ONNX Runtime
                // from needing a writable home directory.
                let environment = builder
                    .with_name("gridwatch")
                    .with_telemetry(false)
                    .build()
                    .map_err(|err| {
                        DetectError::Runtime(format!(
                            "ONNX Runtime from {} loaded but failed to start: {err}",
                            path.display()
                        ))
                    })?;
                let version = loaded_version(&path).unwrap_or_else(|| "unknown".into());
                let info = RuntimeInfo {
                    path: path.clone(),
                    origin,
                    version,
                    environment,
                };
                tracing::info!(
                    library = %info.path.display(),
                    version = %info.version,
                    "loaded ONNX Runtime from {}", info.origin
                );
                return Ok(LOADED.get_or_init(|| info).clone());
            }
            Err(err) => {
                let reason = err
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                if explicit {
                    return Err(DetectError::Runtime(format!(
                        "cannot load ONNX Runtime from {} (set by {origin}): {reason}",
                        path.display()
                    )));
                }
                tried.push(format!("{} ({reason})", path.display()));
            }
        }
    }
    Err(DetectError::Runtime(format!(
        "ONNX Runtime library not found; tried: {}. Run scripts/setup.sh, or set detector.runtime_library or ORT_DYLIB_PATH to a libonnxruntime.so {}.x",
        tried.join("; "),
        super::ORT_WHEEL_VERSION_HINT
    )))
}

/// The version string of the already-loaded library (`OrtApiBase::GetVersionString`); `ort`
/// checks it at load time but does not expose it.
fn loaded_version(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt as _;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: RTLD_NOLOAD only returns a handle to a library that is already loaded (by
    // ort::init_from); the symbol has the documented OrtGetApiBase signature, and the
    // returned string is static inside the library, which stays loaded for the process.
    unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let symbol = libc::dlsym(handle, c"OrtGetApiBase".as_ptr());
        let version = if symbol.is_null() {
            None
        } else {
            let get_api_base: unsafe extern "C" fn() -> *const ort::sys::OrtApiBase =
                std::mem::transmute(symbol);
            let base = get_api_base();
            let text = if base.is_null() {
                std::ptr::null()
            } else {
                ((*base).GetVersionString)()
            };
            (!text.is_null()).then(|| {
                std::ffi::CStr::from_ptr(text)
                    .to_string_lossy()
                    .into_owned()
            })
        };
        libc::dlclose(handle);
        version
    }
}
