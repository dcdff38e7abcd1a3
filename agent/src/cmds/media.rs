//! `gridwatch media`: the sample media of the demo and the tests.

use std::path::PathBuf;

use clap::Subcommand;

use super::models::fetch_one;
use crate::assets::{self, AssetKind, AssetSpec};

#[derive(Subcommand, Debug)]
pub enum MediaCommand {
    /// List the sample media and where each file is found.
    List,
    /// Find every sample file locally or download it; verify sha256.
    Fetch {
        /// Where downloads go (default: $GRIDWATCH_CACHE_DIR/media).
        #[arg(long)]
        dest: Option<PathBuf>,
    },
    /// Print the verified path of one sample file.
    Path { name: String },
}

/// The sample media manifest (media/manifest.toml), compiled in.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaManifest {
    file: Vec<MediaFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MediaFile {
    name: String,
    sha256: String,
    url: String,
    license: String,
}

fn media_manifest() -> anyhow::Result<Vec<(MediaFile, Vec<String>)>> {
    let text = include_str!("../../../media/manifest.toml");
    let manifest: MediaManifest = toml::from_str(text).map_err(|e| {
        anyhow::anyhow!(crate::config::toml_error_at(
            "media/manifest.toml",
            text,
            &e
        ))
    })?;
    Ok(manifest
        .file
        .into_iter()
        .map(|f| {
            let sums = vec![f.sha256.to_ascii_lowercase()];
            (f, sums)
        })
        .collect())
}

pub fn run(cmd: MediaCommand) -> anyhow::Result<()> {
    let files = media_manifest()?;
    fn spec(f: &(MediaFile, Vec<String>)) -> AssetSpec<'_> {
        AssetSpec {
            file: &f.0.name,
            sha256: &f.1,
            url: &f.0.url,
        }
    }
    let dirs = AssetKind::Media.search_dirs(None);
    match cmd {
        MediaCommand::List => {
            for f in &files {
                let state = match assets::locate(&spec(f), AssetKind::Media, &dirs) {
                    Ok(path) => path.display().to_string(),
                    Err(err) => format!("not ready: {err}"),
                };
                println!("{:<34} {:<48} {state}", f.0.name, f.0.license);
            }
            Ok(())
        }
        MediaCommand::Fetch { dest } => {
            let dest = dest.unwrap_or_else(|| assets::cache_dir().join("media"));
            for f in &files {
                fetch_one(&spec(f), AssetKind::Media, None, &dest)?;
            }
            Ok(())
        }
        MediaCommand::Path { name } => {
            let f = files.iter().find(|f| f.0.name == name).ok_or_else(|| {
                let names: Vec<&str> = files.iter().map(|f| f.0.name.as_str()).collect();
                crate::config::ConfigError(format!(
                    "no sample file named {name} (known: {})",
                    names.join(", ")
                ))
            })?;
            let path = assets::locate(&spec(f), AssetKind::Media, &dirs)?;
            println!("{}", path.display());
            Ok(())
        }
    }
}
