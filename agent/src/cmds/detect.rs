//! `gridwatch detect`: objects in one image, as JSON.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::config::{Config, DetectorConfig};
use crate::services::build_detector;
use crate::source::{self, Letterboxer, ModelInput, OpenOptions, VideoSource};

#[derive(Args, Debug)]
pub struct DetectorArgs {
    /// Config file whose [detector] section to use (defaults apply without one).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Model: a built-in name or a manifest .toml (overrides the config).
    #[arg(long)]
    pub model: Option<String>,
    /// Minimum detection score (overrides the config).
    #[arg(long)]
    pub confidence: Option<f32>,
    /// Inference threads for one image (overrides the config).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Inference engine (overrides the config): ort = ONNX Runtime; tract = pure Rust,
    /// only in builds with the cargo feature `tract`.
    #[arg(long, value_enum)]
    pub backend: Option<crate::config::DetectorBackend>,
}

#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Image file (JPEG, PNG, ... anything FFmpeg decodes; a video's first frame works too).
    pub image: PathBuf,
    /// Also write a copy of the image with boxes and labels drawn.
    #[arg(long, value_name = "OUT.jpg")]
    pub annotate: Option<PathBuf>,
    /// Detect only in this region of the picture, cropped and letterboxed as the daemon does
    /// for a detection region: X1,Y1,X2,Y2 as fractions of the picture (as in a camera's
    /// `regions` list). Boxes are still in whole-picture pixels.
    #[arg(long, value_name = "X1,Y1,X2,Y2", value_parser = parse_region)]
    pub region: Option<[f32; 4]>,
    #[command(flatten)]
    pub detector: DetectorArgs,
}

fn parse_region(text: &str) -> Result<[f32; 4], String> {
    let values: Vec<f32> = text
        .split(',')
        .map(|v| v.trim().parse::<f32>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{text}`: {e}; expected X1,Y1,X2,Y2 like 0.1,0.2,0.6,0.9"))?;
    match values[..] {
        [x1, y1, x2, y2]
            if values.iter().all(|v| (0.0..=1.0).contains(v)) && x1 < x2 && y1 < y2 =>
        {
            Ok([x1, y1, x2, y2])
        }
        _ => Err(format!(
            "`{text}`: expected four fractions X1,Y1,X2,Y2 in 0..1 with X1 < X2 and Y1 < Y2"
        )),
    }
}

/// The detector section from `--config` (or defaults) with command-line overrides applied.
fn detector_config(args: &DetectorArgs) -> anyhow::Result<(DetectorConfig, PathBuf)> {
    let (mut detector, base) = match &args.config {
        Some(path) => {
            let config = Config::load(path)?;
            (config.detector.clone(), config.base_dir())
        }
        None => (DetectorConfig::default(), PathBuf::from(".")),
    };
    if let Some(model) = &args.model {
        detector.model = model.clone();
    }
    if let Some(c) = args.confidence {
        if !(c > 0.0 && c < 1.0) {
            return Err(crate::config::ConfigError(format!(
                "--confidence must be in (0, 1), got {c}"
            ))
            .into());
        }
        detector.confidence = c;
    }
    if let Some(t) = args.threads {
        detector.threads = t.clamp(1, 64);
    }
    if let Some(backend) = args.backend {
        detector.backend = backend;
    }
    Ok((detector, base))
}

pub fn run(args: DetectArgs) -> anyhow::Result<()> {
    let (config, base) = detector_config(&args.detector)?;
    let mut detector = build_detector(&config, &base)?;
    let url = args.image.to_string_lossy().to_string();
    let mut source = VideoSource::open(&url, &OpenOptions::default(), Default::default())?;
    let mut letterboxer = Letterboxer::new(&detector.manifest().input);
    let mut input = ModelInput::new(&detector.manifest().input);
    let mut scaled = None;
    let stats = source.run(|frame, _| {
        let crop = args.region.map(|[x1, y1, x2, y2]| {
            let (w, h) = (frame.width(), frame.height());
            let picture = crate::frame::BBox {
                x1: x1 * w as f32,
                y1: y1 * h as f32,
                x2: x2 * w as f32,
                y2: y2 * h as f32,
            };
            crate::frame::Crop::from_px(&picture, w, h)
        });
        scaled = Some(letterboxer.run_crop(frame, crop, &mut input));
        std::ops::ControlFlow::Break(())
    })?;
    let geometry =
        match scaled {
            Some(result) => result.map_err(|e| source::SourceError::Scaler {
                url: url.clone(),
                width: e.width,
                height: e.height,
                format: e.format,
            })?,
            None => stats.check_complete(&url, source.info()).and(Err(
                source::SourceError::NoFrames {
                    url: url.clone(),
                    errors: stats.decode_errors,
                    first: "no picture in the file".into(),
                },
            ))?,
        };
    let mut detections = Vec::new();
    detector.detect(&input, &mut detections)?;
    #[derive(serde::Serialize)]
    struct Report<'a> {
        image: &'a str,
        width: u32,
        height: u32,
        model: &'a str,
        /// The region's pixels: [x, y, width, height].
        #[serde(skip_serializing_if = "Option::is_none")]
        region: Option<[u32; 4]>,
        detections: &'a [crate::frame::Detection],
    }
    let crop = geometry.crop;
    let report = Report {
        image: &url,
        width: geometry.src_width,
        height: geometry.src_height,
        model: &detector.manifest().name,
        region: args
            .region
            .map(|_| [crop.x, crop.y, crop.width, crop.height]),
        detections: &detections,
    };
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &report)?;
    writeln!(stdout)?;
    if let Some(out) = &args.annotate {
        let mut img = image::open(&args.image)
            .with_context(|| format!("reading {} for annotation", args.image.display()))?
            .to_rgb8();
        crate::annotate::draw_detections(&mut img, &detections);
        img.save(out)
            .with_context(|| format!("writing the annotated image {}", out.display()))?;
        tracing::info!(path = %out.display(), "annotated image written");
    }
    Ok(())
}
