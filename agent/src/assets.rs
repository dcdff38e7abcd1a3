//! Finding, verifying and downloading the large files gridwatch needs but never ships in its
//! repository: model weights and sample media.
//!
//! Search order for a file: an explicit directory (config), the directory named by an
//! environment variable, `../shared/<kind>` beside the checkout, then the download cache.
//! Whatever is found is sha256-verified before use; a download is verified before it is
//! moved into place, so a half-written or tampered file is never picked up later.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A file known by name and checksum, with a public source.
#[derive(Debug, Clone, Copy)]
pub struct AssetSpec<'a> {
    pub file: &'a str,
    /// Accepted lowercase hex sha256 sums (a model may have several equivalent exports).
    pub sha256: &'a [String],
    pub url: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error(
        "{file} not found (looked in {searched}); run `gridwatch {kind} fetch` to download it, or set {env_var} to the directory holding it"
    )]
    NotFound {
        file: String,
        kind: &'static str,
        env_var: &'static str,
        searched: String,
    },
    #[error(
        "{path}: sha256 mismatch (got {actual}, expected {expected}); the file is corrupt or not the expected version: delete it and run `gridwatch {kind} fetch`"
    )]
    Checksum {
        path: PathBuf,
        actual: String,
        expected: String,
        kind: &'static str,
    },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },
}

/// Which family of assets: decides the environment variable and the shared sub-directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    Models,
    Media,
}

impl AssetKind {
    pub fn env_var(self) -> &'static str {
        match self {
            AssetKind::Models => "GRIDWATCH_MODEL_DIR",
            AssetKind::Media => "GRIDWATCH_MEDIA_DIR",
        }
    }

    fn subcommand(self) -> &'static str {
        match self {
            AssetKind::Models => "models",
            AssetKind::Media => "media",
        }
    }

    fn shared_dir(self) -> &'static str {
        match self {
            AssetKind::Models => "../shared/models",
            AssetKind::Media => "../shared/media",
        }
    }

    /// Directories searched, in order. `explicit` (from config) comes first.
    pub fn search_dirs(self, explicit: Option<&Path>) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(dir) = explicit {
            dirs.push(dir.to_path_buf());
        }
        if let Some(dir) = std::env::var_os(self.env_var()).filter(|v| !v.is_empty()) {
            dirs.push(PathBuf::from(dir));
        }
        dirs.push(PathBuf::from(self.shared_dir()));
        if let Some(root) = checkout_root() {
            let beside_checkout = root.join(self.shared_dir());
            if !dirs.contains(&beside_checkout) {
                dirs.push(beside_checkout);
            }
        }
        // An installed package or tarball: <prefix>/share/gridwatch/<kind> beside
        // <prefix>/bin/gridwatch, where the .deb puts the bundled model.
        if let Some(prefix) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf))
        {
            let installed = prefix.join("share/gridwatch").join(self.subcommand());
            if !dirs.contains(&installed) {
                dirs.push(installed);
            }
        }
        dirs.push(cache_dir().join(self.subcommand()));
        dirs
    }
}

/// The source checkout this binary was built in, when it runs from `<root>/target/<profile>/`.
/// Lets `../shared` and the project-local ONNX Runtime be found whatever the working
/// directory is (tests run from their package directory, the demo from the root).
pub fn checkout_root() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .find(|dir| dir.join("Cargo.toml").is_file() && dir.join("agent").is_dir())
        .map(Path::to_path_buf)
}

/// Where downloads go: `$GRIDWATCH_CACHE_DIR`, else `$XDG_CACHE_HOME/gridwatch`, else
/// `~/.cache/gridwatch`, else `./.gridwatch-cache` (a daemon user may have no home).
pub fn cache_dir() -> PathBuf {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = from_env("GRIDWATCH_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = from_env("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("gridwatch");
    }
    if let Some(home) = from_env("HOME") {
        return PathBuf::from(home).join(".cache/gridwatch");
    }
    PathBuf::from(".gridwatch-cache")
}

/// Lowercase hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let read_err = |source| AssetError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks a file against the accepted sums.
pub fn verify(path: &Path, spec: &AssetSpec<'_>, kind: AssetKind) -> Result<(), AssetError> {
    let actual = sha256_file(path)?;
    if spec.sha256.iter().any(|s| s.eq_ignore_ascii_case(&actual)) {
        Ok(())
    } else {
        Err(AssetError::Checksum {
            path: path.to_path_buf(),
            actual,
            expected: spec.sha256.join(" or "),
            kind: kind.subcommand(),
        })
    }
}

/// Finds the file in the search directories and verifies it. A file that exists but fails
/// verification is an error, not a reason to look further: the user must know it is bad.
pub fn locate(
    spec: &AssetSpec<'_>,
    kind: AssetKind,
    dirs: &[PathBuf],
) -> Result<PathBuf, AssetError> {
    for dir in dirs {
        let candidate = dir.join(spec.file);
        if candidate.is_file() {
            verify(&candidate, spec, kind)?;
            return Ok(candidate);
        }
    }
    Err(AssetError::NotFound {
        file: spec.file.to_string(),
        kind: kind.subcommand(),
        env_var: kind.env_var(),
        searched: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// How `fetch` obtained the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Found(PathBuf),
    Downloaded(PathBuf),
}

impl Fetched {
    pub fn path(&self) -> &Path {
        match self {
            Fetched::Found(p) | Fetched::Downloaded(p) => p,
        }
    }
}

/// Finds the file locally, or downloads it into `dest` and verifies it.
pub fn fetch(
    spec: &AssetSpec<'_>,
    kind: AssetKind,
    dirs: &[PathBuf],
    dest: &Path,
) -> Result<Fetched, AssetError> {
    match locate(spec, kind, dirs) {
        Ok(path) => return Ok(Fetched::Found(path)),
        Err(AssetError::NotFound { .. }) => {}
        Err(other) => return Err(other),
    }
    download(spec, kind, dest).map(Fetched::Downloaded)
}

/// Downloads `spec.url` into `dest/spec.file` through a temporary file, verifying the sum
/// before the rename so the final name only ever holds a verified file.
pub fn download(spec: &AssetSpec<'_>, kind: AssetKind, dest: &Path) -> Result<PathBuf, AssetError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AssetError::Write { path, source }
    };
    std::fs::create_dir_all(dest).map_err(write_err(dest))?;
    let final_path = dest.join(spec.file);
    let part_path = dest.join(format!("{}.part", spec.file));
    let download_err = |message: String| AssetError::Download {
        url: spec.url.to_string(),
        message,
    };
    tracing::info!(url = spec.url, dest = %final_path.display(), "downloading");
    let mut response = ureq::get(spec.url)
        .call()
        .map_err(|e| download_err(e.to_string()))?;
    let mut reader = response.body_mut().with_config().limit(4 << 30).reader();
    let mut file = File::create(&part_path).map_err(write_err(&part_path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| download_err(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(write_err(&part_path))?;
    }
    file.sync_all().map_err(write_err(&part_path))?;
    drop(file);
    let actual = hex::encode(hasher.finalize());
    if !spec.sha256.iter().any(|s| s.eq_ignore_ascii_case(&actual)) {
        let _ = std::fs::remove_file(&part_path);
        return Err(AssetError::Checksum {
            path: PathBuf::from(spec.url),
            actual,
            expected: spec.sha256.join(" or "),
            kind: kind.subcommand(),
        });
    }
    std::fs::rename(&part_path, &final_path).map_err(write_err(&final_path))?;
    Ok(final_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_for<'a>(file: &'a str, sums: &'a [String]) -> AssetSpec<'a> {
        AssetSpec {
            file,
            sha256: sums,
            url: "http://127.0.0.1:9/unused",
        }
    }

    #[test]
    fn locate_verifies_and_reports_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"hello").unwrap();
        let good =
            vec!["2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".to_string()];
        let dirs = vec![dir.path().to_path_buf()];
        let found = locate(&spec_for("a.bin", &good), AssetKind::Models, &dirs).unwrap();
        assert_eq!(found, dir.path().join("a.bin"));

        let bad = vec!["00".repeat(32)];
        let err = locate(&spec_for("a.bin", &bad), AssetKind::Models, &dirs).unwrap_err();
        assert!(matches!(err, AssetError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("sha256 mismatch"));
    }

    #[test]
    fn locate_missing_names_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let sums = vec!["00".repeat(32)];
        let dirs = vec![dir.path().to_path_buf()];
        let err = locate(&spec_for("none.onnx", &sums), AssetKind::Models, &dirs).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("none.onnx not found"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(text.contains("gridwatch models fetch"), "{text}");
    }
}
