//! Wiring: what `run`, `replay` and the test helpers start (the detector, the store with
//! its delivery and publisher, the evidence worker, and for the daemon the action sender,
//! the web server and the daily summaries), in one place.

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

/// What the daemon runs beside its cameras: started together by [`Services::start`],
/// stopped together by [`Services::stop`] in the order their work depends on each other.
pub struct Services {
    /// Where incident events go (the store, and its outbox with MQTT).
    pub delivery: Delivery,
    /// Snapshots and clips of opened incidents, from the cameras' packet rings.
    pub evidence: Option<crate::evidence::EvidenceWorker>,
    /// The cameras' packet rings the evidence worker reads.
    pub rings: crate::evidence::Rings,
    publisher: Option<Background>,
    actions: Option<crate::actions::ActionSender>,
    web: Option<crate::web::WebServer>,
    summaries: Option<crate::stats::DailySummaries>,
}

impl Services {
    /// Opens the store, starts the publisher and the action sender, closes the incidents a
    /// previous run left open for the `watched` cameras (before any camera can raise a new
    /// one), then starts the web server (with the console's `editing`), the daily summaries
    /// and the evidence worker, as `config` asks. `drain`: how long the publisher goes on
    /// delivering at stop.
    pub fn start(
        config: &Config,
        metrics: Arc<Metrics>,
        drain: std::time::Duration,
        watched: &[String],
        editing: Option<crate::web::ConfigEditing>,
    ) -> anyhow::Result<Services> {
        let (delivery, publisher) = start_delivery(config, true, drain, Arc::clone(&metrics))?;
        let mut delivery = delivery.context("the daemon always has a store")?;
        let actions = Arc::new(crate::actions::Actions::from_config(config)?);
        let actions = if actions.is_empty() {
            None
        } else {
            let wake = crossbeam_channel::bounded(1);
            delivery = delivery.with_actions(Arc::clone(&actions), wake.0.clone());
            Some(
                crate::actions::ActionSender::start(delivery.store().clone(), actions, wake)
                    .context("starting the action sender")?,
            )
        };
        // Tracks do not survive a restart, so an incident the previous run left open would
        // never be closed, and the object still there would open a second one.
        match delivery.close_left_open(watched, config.site.timezone) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                incidents = n,
                "closed the incidents the previous run left open"
            ),
            Err(e) => {
                tracing::error!("cannot close the incidents the previous run left open: {e}")
            }
        }
        let web = match &config.web {
            Some(web) => Some(crate::web::start(
                config,
                web,
                delivery.clone(),
                Arc::clone(&metrics),
                editing,
            )?),
            None => None,
        };
        // After each local midnight, the day's statistics go out retained (missed days at
        // start).
        let summaries = match (&config.mqtt, delivery.topics()) {
            (Some(mqtt), Some(topics)) => Some(
                crate::stats::DailySummaries::start(
                    delivery.clone(),
                    crate::stats::SummarySettings {
                        site: config.site.id.clone(),
                        box_id: mqtt.box_id.clone(),
                        offset: config.site.timezone,
                        topic: topics.daily_summary(),
                        check_every: std::time::Duration::from_secs(60),
                    },
                    Arc::new(crate::time::SystemClock),
                )
                .context("starting the daily summary")?,
            ),
            _ => None,
        };
        let rings: crate::evidence::Rings = Arc::default();
        let evidence = if config.evidence.enabled {
            Some(crate::evidence::EvidenceWorker::start(
                crate::evidence::EvidenceContext::from_config(
                    config,
                    Arc::clone(&rings),
                    delivery.clone(),
                ),
            )?)
        } else {
            None
        };
        Ok(Services {
            delivery,
            evidence,
            rings,
            publisher,
            actions,
            web,
            summaries,
        })
    }

    /// Stops everything, the cameras being stopped already: the evidence worker writes the
    /// clips it can, the web server and the summaries stop, the events the store could not
    /// take get a last try, the action sender finishes its POST, and the publisher delivers
    /// what it can within its drain time (the rest waits in the outbox).
    pub fn stop(self) {
        if let Some(evidence) = self.evidence {
            evidence.finish();
        }
        if let Some(web) = self.web {
            web.stop();
        }
        if let Some(summaries) = self.summaries {
            summaries.stop();
        }
        self.delivery.flush_held_at_exit();
        if let Some(sender) = self.actions {
            sender.stop();
        }
        if let Some(publisher) = self.publisher {
            let waiting = publisher.stop();
            if waiting > 0 {
                tracing::info!(
                    events = waiting,
                    "events kept in the outbox for the next start"
                );
            }
        }
    }
}
