//! The command line: one file per subcommand (its arguments and what it does), each a thin
//! layer over the library; errors come back here and leave as one line with an exit code
//! from [`ExitKind`]. What `run` and `replay` start (detector, delivery, evidence) is wired
//! in [`crate::services`], which they and the test helpers share.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::exit::{ExitKind, one_line};

pub mod check;
pub mod detect;
pub mod media;
pub mod models;
pub mod replay;
pub mod run;
pub mod snapshot;

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
    Detect(detect::DetectArgs),
    /// Run the daemon: watch every configured camera, raise incidents, deliver them over MQTT.
    Run(run::RunArgs),
    /// Run the pipeline over a recorded file as fast as possible and write JSON Lines.
    Replay(replay::ReplayArgs),
    /// Validate a config file, the model and the ONNX Runtime library, and print a summary.
    Check(check::CheckArgs),
    /// List, find, download and verify model files.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Find or download the sample media used by the demo and the tests.
    #[command(subcommand)]
    Media(media::MediaCommand),
    /// Measure decode, inference and the full pipeline on a clip, and print a table.
    Bench(crate::bench::BenchArgs),
    /// Grab one picture of a configured camera and write it as JPEG (for drawing zones over
    /// SSH): the camera's main stream, optionally with its zones drawn.
    Snapshot(snapshot::SnapshotArgs),
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
        Command::Detect(args) => detect::run(args),
        Command::Run(args) => run::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Check(args) => check::run(args),
        Command::Models(cmd) => models::run(cmd),
        Command::Media(cmd) => media::run(cmd),
        Command::Bench(args) => crate::bench::run(args),
        Command::Snapshot(args) => snapshot::run(args),
    }
}
