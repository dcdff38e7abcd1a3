//! Wiring: what `run`, `replay` and the test helpers start (the detector, the store with
//! its delivery and publisher, the evidence worker), in one place.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use anyhow::Context as _;

use crate::config::{CameraConfig, Config, DetectorConfig};
use crate::detect::{self, Detector, DetectorSettings};
use crate::metrics::Metrics;
use crate::publish::{Background, Delivery, PublisherSettings, Shared, Topics};
use crate::store::{Handle, OutboxLimits};

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
/// publisher when MQTT is configured; `metrics` are what its heartbeat reports.
pub fn start_delivery(
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
    let store = Handle::open(&config.storage.data_dir, limits)?;
    let suppressions = store.load_suppressions(
        config.incidents.dismissal_iou,
        config.incidents.dismissal_memory.as_micros() as i64,
        chrono::Utc::now().timestamp_micros(),
    )?;
    let wake = Arc::new(tokio::sync::Notify::new());
    let health = Arc::clone(&metrics.store_health);
    let Some(mqtt) = &config.mqtt else {
        let delivery = Delivery::new(store, None, wake, Some(suppressions), health);
        return Ok((Some(delivery), None));
    };
    let settings = PublisherSettings::from_config(config, mqtt)
        .map_err(|e| config.error_naming_field(e.to_string()))?;
    let delivery = Delivery::new(
        store,
        Some(Topics::new(mqtt, &config.site.id)),
        wake,
        Some(suppressions),
        health,
    );
    let shared = Arc::new(Shared {
        delivery: delivery.clone(),
        metrics,
        connected: AtomicBool::new(false),
        delivered: AtomicU64::new(0),
    });
    let background =
        Background::start(settings, shared, drain).context("starting the publisher")?;
    Ok((Some(delivery), Some(background)))
}
