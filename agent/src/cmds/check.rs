//! `gridwatch check`: validates a config, the model, ONNX Runtime and (optionally) each
//! camera's stream, and prints a summary.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::analytics::CameraAnalytics;
use crate::config::{CameraConfig, Config};
use crate::detect::{self, Detector, DetectorSettings};
use crate::model::ModelManifest;
use crate::publish::PublisherSettings;
use crate::source::{self, OpenOptions, VideoSource};

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Config file to validate.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Also open every camera's stream and report its codec and resolution.
    #[arg(long)]
    pub probe_cameras: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
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
                .map_err(|e| config.error_naming_field(e.to_string()))?;
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
