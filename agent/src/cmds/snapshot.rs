//! `gridwatch snapshot`: one picture of a configured camera, optionally with its zones and
//! detection regions drawn (for drawing zones over SSH).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::config::Config;
use crate::model::ModelManifest;
use crate::source::{self, OpenOptions, VideoSource};

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// Config file with the camera.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The camera's id.
    pub camera: String,
    /// Where to write the JPEG.
    #[arg(long, short, default_value = "snapshot.jpg")]
    pub out: PathBuf,
    /// Draw the camera's zones (outline and id) and detection regions on the picture.
    #[arg(long)]
    pub zones: bool,
    /// Read the sub-stream (detect_url) instead of the main stream.
    #[arg(long)]
    pub sub: bool,
}

pub fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let camera = config.camera(&args.camera).ok_or_else(|| {
        let known: Vec<&str> = config.cameras.iter().map(|c| c.id.as_str()).collect();
        crate::config::ConfigError(format!(
            "{}: no camera `{}`; configured: {}",
            args.config.display(),
            args.camera,
            known.join(", ")
        ))
    })?;
    let url = match (&camera.detect_url, args.sub) {
        (Some(sub), true) => sub.clone(),
        (None, true) => anyhow::bail!("camera {} has no sub-stream (detect_url)", camera.id),
        (_, false) => camera.url.clone(),
    };
    let mut source = VideoSource::open(&url, &OpenOptions::for_camera(camera), Default::default())?;
    let mut picture = None;
    let stats = source.run(|frame, _| {
        picture = Some(source::rgb_image(frame));
        std::ops::ControlFlow::Break(())
    })?;
    let mut image = match picture {
        Some(converted) => converted.context("converting the picture")?,
        None => {
            stats.check_complete(&url, source.info())?;
            return Err(source::SourceError::NoFrames {
                url: source::redact_url(&url),
                errors: stats.decode_errors,
                first: "no picture in the stream".into(),
            }
            .into());
        }
    };
    if args.zones {
        // The regions detection would plan on a picture of this size for these zones, as
        // the console draws them.
        let manifest = ModelManifest::resolve(&config.detector.model, &config.base_dir())?;
        let plan = crate::regions::plan(
            &camera.regions,
            &crate::regions::zone_needs(camera),
            image.width(),
            image.height(),
            manifest.input.width(),
            manifest.input.height(),
        );
        let regions: Vec<(String, [f32; 4])> = plan
            .regions
            .iter()
            .map(|r| (r.id.clone(), [r.rect.x1, r.rect.y1, r.rect.x2, r.rect.y2]))
            .collect();
        crate::annotate::draw_layout(&mut image, &crate::zones::camera_polygons(camera), &regions);
    }
    image
        .save_with_format(&args.out, image::ImageFormat::Jpeg)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}: {}x{} from {} written to {}",
        camera.id,
        image.width(),
        image.height(),
        source::redact_url(&url),
        args.out.display()
    );
    Ok(())
}
