//! `gridwatch bench`: where the time goes, measured in one run on one clip.
//!
//! Rows: FFmpeg's own CLI decoding the clip (the baseline any decoder is held to), our
//! decoder alone, inference alone (1 and 2 threads), and the full replay pipeline. The
//! headline ratio is the full pipeline's CPU time over decode-only plus inference-only CPU
//! time for the same number of inferences: everything above 1.0 is our own overhead
//! (sampling, letterboxing, tensor fill, post-processing, output).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use crate::config::{CameraConfig, Config, DetectorConfig};
use crate::detect::{self, Backend, Detector, DetectorSettings};
use crate::replay::{ReplayOptions, replay};
use crate::source::{Letterboxer, ModelInput, OpenOptions, VideoSource};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Clip to measure on.
    #[arg(long, short)]
    pub input: PathBuf,
    /// Config whose [detector] section to use (defaults without one).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Detection rate of the full-pipeline row.
    #[arg(long, default_value_t = 5.0)]
    pub detect_fps: f64,
    /// Inference-only runs per thread count (after 5 warm-up runs).
    #[arg(long, default_value_t = 100)]
    pub inferences: usize,
    /// Repeat each measurement and report the median with its spread (min-max).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print every sample as one JSON object instead of the tables (for bench/compare.py).
    #[arg(long)]
    pub json: bool,
}

/// Process CPU time (user + system) so far, from getrusage.
fn cpu_time(who: i32) -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass; no other preconditions.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct Sample {
    wall: f64,
    cpu: f64,
}

/// Runs `f` and measures wall and CPU seconds (of this process, or of children).
fn measure<T>(
    children: bool,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(Sample, T)> {
    let who = if children {
        libc::RUSAGE_CHILDREN
    } else {
        libc::RUSAGE_SELF
    };
    let (cpu0, t0) = (cpu_time(who), Instant::now());
    let value = f()?;
    let sample = Sample {
        wall: t0.elapsed().as_secs_f64(),
        cpu: (cpu_time(who) - cpu0).as_secs_f64(),
    };
    Ok((sample, value))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[rank.min(values.len() - 1)]
}

/// Median and spread of repeated samples.
struct Stat {
    wall: f64,
    cpu: f64,
    cpu_min: f64,
    cpu_max: f64,
}

fn summarise(samples: &[Sample]) -> Stat {
    let mut wall: Vec<f64> = samples.iter().map(|s| s.wall).collect();
    let mut cpu: Vec<f64> = samples.iter().map(|s| s.cpu).collect();
    let cpu_min = cpu.iter().copied().fold(f64::MAX, f64::min);
    let cpu_max = cpu.iter().copied().fold(0.0, f64::max);
    Stat {
        wall: median(&mut wall),
        cpu: median(&mut cpu),
        cpu_min,
        cpu_max,
    }
}

fn ffmpeg_cli_decode(input: &PathBuf) -> anyhow::Result<()> {
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-threads", "1", "-i"])
        .arg(input)
        .args(["-an", "-f", "null", "-"])
        .status()
        .context("running the ffmpeg CLI (install the `ffmpeg` package)")?;
    anyhow::ensure!(status.success(), "ffmpeg CLI exited with {status}");
    Ok(())
}

fn decode_only(input: &str) -> anyhow::Result<u64> {
    let mut source = VideoSource::open(input, &OpenOptions::default(), Default::default())?;
    let stats = source.run(|_, _| std::ops::ControlFlow::Continue(()))?;
    Ok(stats.frames)
}

fn inference_latencies(
    detector: &mut Detector,
    input: &str,
    runs: usize,
) -> anyhow::Result<Vec<f64>> {
    // A real frame in the tensor, so the timing is not of an all-padding image.
    let spec = detector.manifest().input.clone();
    let mut source = VideoSource::open(input, &OpenOptions::default(), Default::default())?;
    let mut boxer = Letterboxer::new(&spec);
    let mut image = ModelInput::new(&spec);
    source.run(|frame, _| {
        let _ = boxer.run(frame, &mut image);
        std::ops::ControlFlow::Break(())
    })?;
    let mut out = Vec::new();
    for _ in 0..5 {
        detector.detect(&image, &mut out)?;
    }
    let mut latencies = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        detector.infer()?;
        latencies.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(latencies)
}

/// Analytics for a camera with no zones: tracking runs, no rule fires.
fn empty_analytics(
    camera: &CameraConfig,
    manifest: &crate::model::ModelManifest,
) -> anyhow::Result<crate::analytics::CameraAnalytics> {
    let config = Config::parse(
        "[site]\nid = \"bench\"\ngrid_code = \"0\"\n",
        std::path::Path::new("bench.toml"),
    )?;
    Ok(crate::analytics::CameraAnalytics::new(
        &config, camera, manifest,
    )?)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let repeat = args.repeat.max(1);
    let (detector_config, base) = match &args.config {
        Some(path) => {
            let c = Config::load(path)?;
            (c.detector.clone(), c.base_dir())
        }
        None => (DetectorConfig::default(), PathBuf::from(".")),
    };
    let loaded = detect::prepare(&detector_config, &base)?;
    let input = args.input.to_string_lossy().to_string();
    let info = VideoSource::open(&input, &OpenOptions::default(), Default::default())?
        .info()
        .clone();
    let make_detector_with = |backend: &Backend, threads: usize| {
        Detector::new(
            backend,
            Arc::clone(&loaded.manifest),
            &loaded.model_path,
            DetectorSettings {
                threads,
                ..DetectorSettings::from(&detector_config)
            },
        )
    };
    let make_detector = |threads: usize| make_detector_with(&loaded.backend, threads);

    let mut cli = Vec::new();
    let mut ours = Vec::new();
    let mut frames = 0;
    for _ in 0..repeat {
        cli.push(measure(true, || ffmpeg_cli_decode(&args.input))?.0);
        let (sample, n) = measure(false, || decode_only(&input))?;
        ours.push(sample);
        frames = n;
    }
    let mut infer_rows = Vec::new();
    for (backend, threads) in compared_backends(&loaded.backend, &detector_config)
        .iter()
        .flat_map(|b| [(b, 1usize), (b, 2)])
    {
        let mut detector = make_detector_with(backend, threads)?;
        let (sample, mut lat) = measure(false, || {
            inference_latencies(&mut detector, &input, args.inferences)
        })?;
        // CPU per inference includes the warm-up detect() calls; negligible against 100 runs.
        let cpu_per = sample.cpu / (args.inferences + 5) as f64;
        infer_rows.push((
            backend.short_name(),
            threads,
            median(&mut lat.clone()),
            percentile(&mut lat, 0.95),
            cpu_per,
        ));
    }
    let mut full = Vec::new();
    let mut inferred = 0;
    for _ in 0..repeat {
        let mut detector = make_detector(1)?;
        let options = ReplayOptions {
            camera: CameraConfig {
                detect_fps: args.detect_fps,
                ..CameraConfig::adhoc("bench", &input)
            },
            input: input.clone(),
            start_at_us: 0,
            offset: chrono::FixedOffset::east_opt(0).unwrap_or_else(|| chrono::Utc.fix()),
            queue_depth: 4,
            progress: false,
            report_confidence: detector_config.confidence,
            metrics: None,
        };
        let (sample, summary) = measure(false, || {
            let analytics = empty_analytics(&options.camera, detector.manifest())?;
            replay(
                &mut detector,
                analytics,
                None,
                None,
                &options,
                std::io::sink(),
            )
        })?;
        inferred = summary.frames_detected;
        full.push(sample);
    }

    let media = info.duration_s.unwrap_or(0.0);
    if args.json {
        let inference: Vec<_> = infer_rows
            .iter()
            .map(|(backend, threads, median, p95, cpu)| {
                serde_json::json!({
                    "backend": backend, "threads": threads, "median_ms": median, "p95_ms": p95, "cpu_ms": cpu * 1e3,
                })
            })
            .collect();
        let report = serde_json::json!({
            "input": args.input.display().to_string(),
            "codec": info.codec,
            "width": info.width,
            "height": info.height,
            "media_seconds": media,
            "frames": frames,
            "detect_fps": args.detect_fps,
            "ffmpeg_cli_decode": cli,
            "decode_only": ours,
            "inference": inference,
            "replay": full,
            "replay_inferred": inferred,
        });
        println!("{report}");
        return Ok(());
    }
    let cli = summarise(&cli);
    let ours = summarise(&ours);
    let full = summarise(&full);
    let infer1_cpu = infer_rows[0].4;
    let budget = ours.cpu + infer1_cpu * inferred as f64;
    println!(
        "gridwatch bench: {} ({} {}x{}, {:.1} s, {} frames), model {}, {}, {} run(s) each, median [min-max]",
        args.input.display(),
        info.codec,
        info.width,
        info.height,
        media,
        frames,
        loaded.manifest.name,
        loaded.backend.short_name(),
        repeat
    );
    println!();
    println!(
        "| {:<34} | {:>8} | {:>20} | {:>10} | {:>9} | {:>8} |",
        "measurement", "wall s", "CPU s", "frames/s", "x realtime", "vs base"
    );
    println!(
        "|{:-<36}|{:->10}|{:->22}|{:->12}|{:->11}|{:->10}|",
        "", "", "", "", "", ""
    );
    let row = |name: &str, s: &Stat, n: u64, base: f64| {
        println!(
            "| {:<34} | {:>8.3} | {:>7.3} [{:.3}-{:.3}] | {:>10.1} | {:>10.1} | {:>7.2}x |",
            name,
            s.wall,
            s.cpu,
            s.cpu_min,
            s.cpu_max,
            n as f64 / s.wall.max(1e-9),
            media / s.wall.max(1e-9),
            s.cpu / base.max(1e-9)
        )
    };
    row("ffmpeg CLI decode, 1 thread (base)", &cli, frames, cli.cpu);
    row("gridwatch decode only", &ours, frames, cli.cpu);
    row(
        &format!("gridwatch replay, {} detect fps", args.detect_fps),
        &full,
        frames,
        cli.cpu,
    );
    println!();
    println!(
        "| {:<34} | {:>10} | {:>10} | {:>14} | {:>12} |",
        "inference only", "median ms", "p95 ms", "CPU ms / run", "vs base"
    );
    println!(
        "|{:-<36}|{:->12}|{:->12}|{:->16}|{:->14}|",
        "", "", "", "", ""
    );
    // The baseline is the configured backend on 1 thread, measured in this same run.
    let base_ms = infer_rows[0].2;
    for (i, (backend, threads, med, p95, cpu)) in infer_rows.iter().enumerate() {
        let name = format!(
            "{backend}, {threads} thread(s){}",
            if i == 0 { " (base)" } else { "" }
        );
        println!(
            "| {:<34} | {:>10.2} | {:>10.2} | {:>14.2} | {:>11.2}x |",
            name,
            med,
            p95,
            cpu * 1e3,
            med / base_ms.max(1e-9)
        );
    }
    println!();
    println!(
        "full pipeline CPU / (decode-only CPU + {} x inference-only CPU) = {:.3} / {:.3} = {:.3} (goal <= 1.05)",
        inferred,
        full.cpu,
        budget,
        full.cpu / budget.max(1e-9)
    );
    Ok(())
}

/// The configured backend first, then every other backend this binary can run here, so
/// their latencies land in one table. A backend that cannot load (no ONNX Runtime on an
/// armv7 box) is left out with a note.
#[cfg_attr(not(feature = "tract"), allow(unused_variables, unused_mut))]
fn compared_backends(configured: &Backend, config: &DetectorConfig) -> Vec<Backend> {
    let mut out = vec![configured.clone()];
    match configured {
        Backend::Ort(_) => {
            #[cfg(feature = "tract")]
            out.push(Backend::Tract);
        }
        #[cfg(feature = "tract")]
        Backend::Tract => match detect::runtime::load(config.runtime_library.as_deref()) {
            Ok(runtime) => out.push(Backend::Ort(runtime)),
            Err(err) => eprintln!("bench: no ONNX Runtime row: {err}"),
        },
    }
    out
}

use chrono::Offset as _;
