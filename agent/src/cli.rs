//! Command-line interface. Each subcommand is a thin layer over the library modules; errors
//! come back here and leave as one line with an exit code from [`ExitKind`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use crate::analytics::CameraAnalytics;
use crate::assets::{self, AssetKind, AssetSpec, Fetched};
use crate::config::{CameraConfig, Config, DetectorConfig};
use crate::detect::{self, Detector, DetectorSettings};
use crate::exit::{ExitKind, one_line};
use crate::incidents::suppress::Suppressions;
use crate::metrics::Metrics;
use crate::model::{self, ModelManifest};
use crate::publish::{Background, Delivery, PublisherSettings, Shared, Topics};
use crate::replay::{ReplayIncomplete, ReplayOptions};
use crate::source::{self, Letterboxer, ModelInput, OpenOptions, VideoSource};
use crate::store::{OutboxLimits, Store};

const ABOUT: &str = "gridwatch: camera streams in, grid incidents out.

Decodes camera streams (RTSP or files), runs an ONNX object detector on sampled frames, and \
turns what it sees into grid-management incidents (illegal parking, fly-wire e-bike \
charging, crowding).";

const AFTER_HELP: &str = "Getting started on a new box:
  1. gridwatch models fetch            find or download the model, verify its sha256
  2. cp agent/config.example.toml /etc/gridwatch/config.toml and edit site and cameras
  3. gridwatch check --config /etc/gridwatch/config.toml
  4. gridwatch replay --config ... --input some-recording.mp4   see what the model sees

Environment:
  GRIDWATCH_MODEL_DIR   directory searched first for model files
  GRIDWATCH_MEDIA_DIR   directory searched first for sample media
  GRIDWATCH_CACHE_DIR   where downloads go (default ~/.cache/gridwatch)
  ORT_DYLIB_PATH        libonnxruntime.so to load when the config names none
  GRIDWATCH_LOG         log filter, e.g. `info` or `gridwatch=debug`

Exit codes: 0 ok, 1 other error, 2 bad config or usage, 3 model or ONNX Runtime problem,
4 input media problem.";

#[derive(Parser, Debug)]
#[command(name = "gridwatch", version, about = ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, env = "GRIDWATCH_LOG", default_value = "info")]
    pub log_level: String,
    /// Log line format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (journald adds its own timestamps).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Detect objects in one image and print them as JSON.
    Detect(DetectArgs),
    /// Run the daemon: watch every configured camera, raise incidents, deliver them over MQTT.
    Run(RunArgs),
    /// Run the pipeline over a recorded file as fast as possible and write JSON Lines.
    Replay(ReplayArgs),
    /// Validate a config file, the model and the ONNX Runtime library, and print a summary.
    Check(CheckArgs),
    /// List, find, download and verify model files.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Find or download the sample media used by the demo and the tests.
    #[command(subcommand)]
    Media(MediaCommand),
    /// Measure decode, inference and the full pipeline on a clip, and print a table.
    Bench(crate::bench::BenchArgs),
    /// Grab one picture of a configured camera and write it as JPEG (for drawing zones over
    /// SSH): the camera's main stream, optionally with its zones drawn.
    Snapshot(SnapshotArgs),
}

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

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Config file (site, detector, cameras).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Recorded video to replay (file path or URL).
    #[arg(long, short)]
    pub input: String,
    /// Camera whose settings (detect_fps, ...) apply; default: the first configured camera.
    #[arg(long)]
    pub camera: Option<String>,
    /// Write JSON Lines here instead of standard output.
    #[arg(long, short, value_name = "events.jsonl")]
    pub out: Option<PathBuf>,
    /// Wall-clock time of the first frame (RFC 3339, e.g. 2026-11-24T22:30:00+08:00);
    /// default: now. Schedules and event times follow from it.
    #[arg(long)]
    pub start_time: Option<String>,
    /// Detection rate override, frames per second of stream time.
    #[arg(long)]
    pub detect_fps: Option<f64>,
    /// Never show the progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
    /// Print the summary as JSON on stderr instead of text.
    #[arg(long)]
    pub summary_json: bool,
    /// Record incidents in the store (data_dir) even without [mqtt]; with [mqtt] they are
    /// always stored and queued for delivery.
    #[arg(long)]
    pub store: bool,
    /// With [mqtt]: after the replay, keep delivering queued events for up to this long.
    /// What is left stays in the outbox for the next run.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Config file (site, detector, cameras, zones, mqtt, web).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Do not open the cameras: serve the review page and deliver queued events only.
    #[arg(long)]
    pub no_cameras: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Config file to validate.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Also open every camera's stream and report its codec and resolution.
    #[arg(long)]
    pub probe_cameras: bool,
}

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

pub fn main() -> ExitCode {
    // A panic is a bug, but it must still leave as one line, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        eprintln!("gridwatch: internal error{location}: {message} (please report this)");
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() {
                ExitKind::Usage.code()
            } else {
                0
            };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli.log_level, cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gridwatch: error: {}", one_line(&err));
            ExitCode::from(ExitKind::of(&err).code())
        }
    }
}

fn init_logging(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Detect(args) => cmd_detect(args),
        Command::Run(args) => crate::daemon::run(&args.config, !args.no_cameras),
        Command::Replay(args) => cmd_replay(args),
        Command::Check(args) => cmd_check(args),
        Command::Models(cmd) => cmd_models(cmd),
        Command::Media(cmd) => cmd_media(cmd),
        Command::Bench(args) => crate::bench::run(args),
        Command::Snapshot(args) => cmd_snapshot(args),
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

/// Loads the model and ONNX Runtime and builds a detector.
pub fn build_detector(config: &DetectorConfig, base_dir: &Path) -> anyhow::Result<Detector> {
    let loaded = detect::prepare(config, base_dir)?;
    let detector = Detector::new(
        &loaded.backend,
        loaded.manifest,
        &loaded.model_path,
        DetectorSettings::from(config),
    )?;
    Ok(detector)
}

fn cmd_detect(args: DetectArgs) -> anyhow::Result<()> {
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

fn cmd_snapshot(args: SnapshotArgs) -> anyhow::Result<()> {
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

/// Parses an RFC 3339 time into Unix microseconds.
pub fn parse_start_time(text: &str) -> anyhow::Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| {
            crate::config::ConfigError(format!(
                "--start-time `{text}`: {e}; expected RFC 3339 like 2026-11-24T22:30:00+08:00"
            ))
            .into()
        })
}

fn cmd_replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let mut camera = match &args.camera {
        Some(id) => config.camera(id).cloned().ok_or_else(|| {
            let known: Vec<&str> = config.cameras.iter().map(|c| c.id.as_str()).collect();
            crate::config::ConfigError(format!(
                "--camera {id}: no such camera in {} (configured: {})",
                args.config.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })?,
        None => config
            .cameras
            .first()
            .cloned()
            .unwrap_or_else(|| CameraConfig::adhoc("replay", &args.input)),
    };
    if let Some(fps) = args.detect_fps {
        if !(fps > 0.0 && fps <= 60.0) {
            return Err(crate::config::ConfigError(format!(
                "--detect-fps must be in (0, 60], got {fps}"
            ))
            .into());
        }
        camera.detect_fps = fps;
    }
    let start_at_us = match &args.start_time {
        Some(text) => parse_start_time(text)?,
        None => chrono::Utc::now().timestamp_micros(),
    };
    // The tracker keeps weak detections to hold on to half-hidden objects, so the detector
    // reports down to the tracker's low score; the output lists only confident ones.
    let detector_config = DetectorConfig {
        confidence: config.detector.confidence.min(config.tracker.low_score),
        ..config.detector.clone()
    };
    let mut detector = build_detector(&detector_config, &config.base_dir())?;
    let mut analytics = CameraAnalytics::new(&config, &camera, detector.manifest())?;
    // The heartbeat (with [mqtt]) reports this camera's frame rates like the daemon's.
    let metrics = Arc::new(Metrics::new(std::slice::from_ref(&camera.id)));
    let options = ReplayOptions {
        metrics: metrics.camera(&camera.id),
        camera,
        input: args.input.clone(),
        start_at_us,
        offset: config.site.timezone,
        queue_depth: 4,
        progress: !args.no_progress,
        report_confidence: config.detector.confidence,
    };
    let (delivery, background) =
        start_delivery_with(&config, args.store, args.drain_timeout, metrics)?;
    if let Some(memory) = delivery.as_ref().and_then(|d| d.suppressions.as_ref()) {
        analytics.set_suppressions(Arc::clone(memory));
    }
    let evidence = match &delivery {
        Some(delivery) if config.evidence.enabled => {
            Some(start_evidence(&config, &options.camera, delivery, true)?)
        }
        _ => None,
    };
    // Kept to flush what the store could not take, after the replay has the delivery.
    let delivery_at_exit = delivery.clone();
    let result = match &args.out {
        Some(path) => std::fs::File::create(path)
            .with_context(|| format!("cannot create the output file {}", path.display()))
            .and_then(|file| {
                crate::replay::replay(
                    &mut detector,
                    analytics,
                    delivery,
                    evidence.as_ref(),
                    &options,
                    file,
                )
            }),
        None => crate::replay::replay(
            &mut detector,
            analytics,
            delivery,
            evidence.as_ref(),
            &options,
            std::io::stdout().lock(),
        ),
    };
    if let Some(evidence) = evidence {
        evidence.worker.finish();
    }
    if let Some(delivery) = &delivery_at_exit {
        delivery.flush_held_at_exit();
    }
    if let Some(background) = background {
        let waiting = background.stop();
        if waiting > 0 {
            tracing::warn!(
                events = waiting,
                db = %config.storage.data_dir.join("gridwatch.db").display(),
                "not all events were delivered before --drain-timeout; they stay in the outbox and go out with the next run"
            );
        }
    }
    let print_summary = |summary: &crate::replay::ReplaySummary| {
        if args.summary_json {
            eprintln!("{}", serde_json::to_string(summary).unwrap_or_default());
        } else {
            eprint!("{summary}");
        }
    };
    match result {
        Ok(summary) => {
            print_summary(&summary);
            Ok(())
        }
        Err(err) => {
            if let Some(incomplete) = err.downcast_ref::<ReplayIncomplete>() {
                print_summary(&incomplete.summary);
            }
            Err(err)
        }
    }
}

/// The packet ring and evidence worker for one camera. A replay runs far faster than real
/// time, so its ring holds a longer window for the worker to catch up.
pub fn start_evidence(
    config: &Config,
    camera: &CameraConfig,
    delivery: &Delivery,
    replay: bool,
) -> anyhow::Result<crate::replay::Evidence> {
    let e = &config.evidence;
    let margin = if replay { 120 } else { 10 };
    let window = e.pre_roll + e.post_roll + std::time::Duration::from_secs(margin);
    let ring = crate::evidence::PacketRing::new(window.as_micros() as i64, 256 << 20);
    let rings = Arc::new(std::sync::RwLock::new(
        [(camera.id.clone(), ring.clone())].into_iter().collect(),
    ));
    let worker = crate::evidence::EvidenceWorker::start(
        crate::evidence::EvidenceContext::from_config(config, rings, delivery.clone()),
    )
    .context("starting the evidence worker")?;
    let zones = crate::zones::camera_polygons(camera);
    Ok(crate::replay::Evidence {
        worker,
        ring,
        zones,
    })
}

/// Opens the store (always with MQTT, else when `store` is asked for) and starts the
/// publisher when MQTT is configured.
pub fn start_delivery(
    config: &Config,
    store: bool,
    drain: std::time::Duration,
) -> anyhow::Result<(Option<Delivery>, Option<Background>)> {
    let camera_ids: Vec<String> = config.cameras.iter().map(|c| c.id.clone()).collect();
    start_delivery_with(config, store, drain, Arc::new(Metrics::new(&camera_ids)))
}

/// As [`start_delivery`], with the metrics the heartbeat reports.
pub fn start_delivery_with(
    config: &Config,
    store: bool,
    drain: std::time::Duration,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Option<Delivery>, Option<Background>)> {
    if config.mqtt.is_none() && !store {
        return Ok((None, None));
    }
    let limits = config
        .mqtt
        .as_ref()
        .map_or_else(OutboxLimits::default, |m| OutboxLimits {
            max_events: m.outbox.max_events,
            max_bytes: m.outbox.max_bytes,
        });
    let opened = Store::open(&config.storage.data_dir, limits)?;
    let suppressions = Arc::new(Suppressions::load(
        &opened,
        config.incidents.dismissal_iou,
        config.incidents.dismissal_memory.as_micros() as i64,
        chrono::Utc::now().timestamp_micros(),
    )?);
    let store = Arc::new(Mutex::new(opened));
    suppressions.persist_hits(Arc::clone(&store));
    let wake = Arc::new(tokio::sync::Notify::new());
    let health = Arc::clone(&metrics.store_health);
    let Some(mqtt) = &config.mqtt else {
        let delivery = Delivery::new(store, None, wake, Some(suppressions), health);
        return Ok((Some(delivery), None));
    };
    let settings = PublisherSettings::from_config(config, mqtt)
        .map_err(|message| config.error_naming_field(message))?;
    let shared = Arc::new(Shared {
        store: Arc::clone(&store),
        suppressions: Some(Arc::clone(&suppressions)),
        wake: Arc::clone(&wake),
        metrics,
        connected: AtomicBool::new(false),
        delivered: AtomicU64::new(0),
    });
    let background =
        Background::start(settings, shared, drain).context("starting the publisher")?;
    let delivery = Delivery::new(
        store,
        Some(Topics::new(mqtt, &config.site.id)),
        wake,
        Some(suppressions),
        health,
    );
    Ok((Some(delivery), Some(background)))
}

fn cmd_check(args: CheckArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    println!("config      {}: ok", args.config.display());
    println!(
        "site        {} ({}), grid {}, UTC{}",
        config.site.id,
        if config.site.name.is_empty() {
            "unnamed"
        } else {
            &config.site.name
        },
        config.site.grid_code,
        config.site.timezone
    );
    println!("data dir    {}", config.storage.data_dir.display());
    match &config.mqtt {
        Some(mqtt) => {
            // Reads the password source and the TLS files, as the publisher will.
            PublisherSettings::from_config(&config, mqtt)
                .map_err(|message| config.error_naming_field(message))?;
            println!(
                "mqtt        {}:{} (MQTT {}, {}, user {}), topics under {}",
                mqtt.host,
                mqtt.port,
                match mqtt.protocol {
                    crate::config::MqttProtocol::V311 => "3.1.1",
                    crate::config::MqttProtocol::V5 => "5",
                },
                if mqtt.tls.is_some() {
                    "TLS"
                } else {
                    "plain TCP"
                },
                mqtt.username.as_deref().unwrap_or("none"),
                mqtt.prefix(&config.site.id)
            );
        }
        None => println!("mqtt        not configured: incidents are stored only"),
    }
    // Reads each action's key, as the daemon does at start.
    crate::actions::Actions::from_config(&config)?;
    for action in &config.actions {
        println!(
            "action      {}: POST {} ({:?}) on {} of {}",
            action.id,
            action.url,
            action.format,
            action.on.join(", "),
            if action.kinds.is_empty() {
                "every kind".to_string()
            } else {
                action.kinds.join(", ")
            }
        );
    }
    let loaded = detect::prepare(&config.detector, &config.base_dir())?;
    let detector = Detector::new(
        &loaded.backend,
        loaded.manifest.clone(),
        &loaded.model_path,
        DetectorSettings::from(&config.detector),
    )?;
    let m = detector.manifest();
    println!(
        "model       {} ({}): {} verified, {} classes, input {}x{}",
        m.name,
        m.origin,
        loaded.model_path.display(),
        m.classes.len(),
        m.input.width(),
        m.input.height()
    );
    println!("runtime     {}", loaded.backend);
    println!(
        "detector    threads {}, confidence {}, nms iou {}",
        config.detector.threads, config.detector.confidence, config.detector.nms_iou
    );
    if config.cameras.is_empty() {
        println!("cameras     none configured");
    }
    let mut failed = 0;
    for cam in &config.cameras {
        let detect_note = cam
            .detect_url
            .as_deref()
            .map(|u| format!(", detect on {}", source::redact_url(u)))
            .unwrap_or_default();
        println!(
            "camera      {} \"{}\": {}{}, {} detect fps{}",
            cam.id,
            cam.name,
            source::redact_url(&cam.url),
            detect_note,
            cam.detect_fps,
            if cam.enabled { "" } else { " (disabled)" }
        );
        // Zones and rules are checked against the model (label groups) as the pipeline
        // would build them.
        CameraAnalytics::new(&config, cam, m)?;
        for zone in &cam.zones {
            let rules = zone.rule_names();
            println!(
                "  zone      {} \"{}\": {} points, rules: {}",
                zone.id,
                zone.name,
                zone.polygon.len(),
                if rules.is_empty() {
                    "none".to_string()
                } else {
                    rules.join(", ")
                }
            );
        }
        for line in &cam.lines {
            println!(
                "  line      {} \"{}\": {} points, counted; wrong_way_entry: {}",
                line.id,
                line.name,
                line.points.len(),
                match line.alert {
                    Some(crate::config::CrossingDirection::In) => "in",
                    Some(crate::config::CrossingDirection::Out) => "out",
                    Some(crate::config::CrossingDirection::Both) => "both ways",
                    None => "none",
                }
            );
        }
        if args.probe_cameras && cam.enabled {
            if let Err(err) = probe_camera_regions(cam, m) {
                failed += 1;
                println!("            stream FAILED: {err}");
            }
        } else {
            println!(
                "  regions   {}: planned for the stream's size when it opens (--probe-cameras prints them)",
                match &cam.regions {
                    crate::config::RegionsSetting::Auto => "auto, from the zones".to_string(),
                    crate::config::RegionsSetting::Full => "full picture".to_string(),
                    crate::config::RegionsSetting::List(list) => format!("{} listed", list.len()),
                }
            );
        }
    }
    if failed > 0 {
        bail!(source::SourceError::Open {
            url: format!("{failed} camera(s)"),
            reason: "see the lines above".into()
        });
    }
    Ok(())
}

/// Opens the camera's detection stream and prints its detection regions, which stream they
/// read and why, as the daemon would choose: the sub-stream unless a zone's objects lack
/// the pixels there, then the main stream.
fn probe_camera_regions(cam: &CameraConfig, m: &ModelManifest) -> Result<(), source::SourceError> {
    let open = OpenOptions::for_camera(cam);
    let plan_for = |url: &str| -> Result<crate::regions::RegionPlan, source::SourceError> {
        let src = VideoSource::open(url, &open, Default::default())?;
        let i = src.info();
        println!(
            "            stream ok: {} {}x{} ({})",
            i.codec,
            i.width,
            i.height,
            source::redact_url(url)
        );
        Ok(crate::regions::plan(
            &cam.regions,
            &crate::regions::zone_needs(cam),
            i.width,
            i.height,
            m.input.width(),
            m.input.height(),
        ))
    };
    let mut stream = if cam.detect_url.is_some() {
        "sub"
    } else {
        "main"
    };
    let mut why = if cam.detect_url.is_some() {
        "its regions have the pixels their objects need there".to_string()
    } else {
        "the camera has no sub-stream (detect_url)".to_string()
    };
    let mut plan = plan_for(cam.detection_url())?;
    if cam.detect_url.is_some()
        && let Some(short) = plan.short_reason()
    {
        stream = "main";
        why = format!("the sub-stream is short of pixels: {short}");
        plan = plan_for(&cam.url)?;
    }
    println!(
        "  regions   read the {stream} stream{}: {why}",
        if stream == "main" && cam.decode == crate::config::DecodeMode::Keyframes {
            " (keyframes)"
        } else {
            ""
        }
    );
    for line in plan.describe(cam.detect_fps) {
        println!("            {line}");
    }
    Ok(())
}

fn fetch_one(
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

fn cmd_models(cmd: ModelsCommand) -> anyhow::Result<()> {
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
    let text = include_str!("../../media/manifest.toml");
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

fn cmd_media(cmd: MediaCommand) -> anyhow::Result<()> {
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
