//! `gridwatch replay`: the pipeline over a recorded file, as fast as it goes, events out as
//! JSON Lines.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use crate::analytics::CameraAnalytics;
use crate::config::{CameraConfig, Config, DetectorConfig};
use crate::metrics::Metrics;
use crate::replay::{ReplayIncomplete, ReplayOptions};
use crate::services::{build_detector, start_delivery, start_evidence};

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

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
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
    let (delivery, background) = start_delivery(&config, args.store, args.drain_timeout, metrics)?;
    if let Some(memory) = delivery.as_ref().and_then(|d| d.suppressions()) {
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
