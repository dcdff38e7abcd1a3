//! `gridwatch models`: list, find, download and verify model files.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::assets::{self, AssetKind, AssetSpec, Fetched};
use crate::model::{self, ModelManifest};

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List the built-in model manifests and whether their files are present.
    List,
    /// Find each model file locally or download it from its manifest URL; verify sha256.
    Fetch(FetchModelsArgs),
    /// Verify the model file of a manifest (exit 3 when missing or corrupt).
    Verify {
        /// Built-in model name or manifest path.
        #[arg(default_value = "yolox_nano")]
        model: String,
    },
}

#[derive(Args, Debug)]
pub struct FetchModelsArgs {
    /// Built-in model names or manifest paths.
    pub models: Vec<String>,
    /// Every built-in model.
    #[arg(long)]
    pub all: bool,
    /// Where downloads go (default: $GRIDWATCH_CACHE_DIR/models).
    #[arg(long)]
    pub dest: Option<PathBuf>,
}

pub(super) fn fetch_one(
    spec: &AssetSpec<'_>,
    kind: AssetKind,
    explicit_dir: Option<&Path>,
    dest: &Path,
) -> anyhow::Result<()> {
    let dirs = kind.search_dirs(explicit_dir);
    match assets::fetch(spec, kind, &dirs, dest)? {
        Fetched::Found(path) => println!("{}: verified at {}", spec.file, path.display()),
        Fetched::Downloaded(path) => {
            println!(
                "{}: downloaded and verified to {}",
                spec.file,
                path.display()
            )
        }
    }
    Ok(())
}

pub fn run(cmd: ModelsCommand) -> anyhow::Result<()> {
    let base = PathBuf::from(".");
    match cmd {
        ModelsCommand::List => {
            let dirs = AssetKind::Models.search_dirs(None);
            for name in model::built_in_names() {
                let m = ModelManifest::resolve(name, &base)?;
                let state = match assets::locate(&m.asset(), AssetKind::Models, &dirs) {
                    Ok(path) => format!("present at {}", path.display()),
                    Err(err) => format!("not ready: {err}"),
                };
                println!("{name:<12} {} [{}] {state}", m.description, m.license);
            }
            Ok(())
        }
        ModelsCommand::Fetch(args) => {
            let mut names = args.models.clone();
            if args.all || names.is_empty() {
                names.extend(model::built_in_names().iter().map(|s| s.to_string()));
            }
            names.dedup();
            let dest = args
                .dest
                .clone()
                .unwrap_or_else(|| assets::cache_dir().join("models"));
            for name in names {
                let m = ModelManifest::resolve(&name, &base)?;
                fetch_one(&m.asset(), AssetKind::Models, None, &dest)?;
            }
            Ok(())
        }
        ModelsCommand::Verify { model } => {
            let m = ModelManifest::resolve(&model, &base)?;
            let dirs = AssetKind::Models.search_dirs(None);
            let path = assets::locate(&m.asset(), AssetKind::Models, &dirs)?;
            println!("{}: sha256 ok ({})", path.display(), m.file);
            Ok(())
        }
    }
}
