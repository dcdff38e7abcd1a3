//! Publish stage: delivers the outbox to the grid platform over MQTT, at least once, in
//! order per camera, and answers the platform's commands.
//!
//! Topics under the prefix (default `gridwatch/v1/<site>`): `<camera>/incident` (events,
//! QoS 1), `status` (retained online/offline, the offline one also as Last Will),
//! `heartbeat` (QoS 0), `cmd/<name>` (commands in), `cmd/result` (answers), `stats/daily`
//! (the daily statistics summary, retained, through the outbox). docs/mqtt.md
//! documents them.
//!
//! The outbox (SQLite) is the source of truth: rows go out in id order with a bounded
//! window in flight and are deleted on their PUBACK. On any connection loss the session is
//! dropped whole and the next one starts again from the oldest row still in the outbox, so
//! an event is never lost and at worst delivered twice (the platform drops duplicates by
//! `event_id`). Reconnects back off exponentially with jitter.

pub mod client;
pub mod commands;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::FixedOffset;
use rand::Rng as _;
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::config::{Config, MqttConfig};
use crate::metrics::{Metrics, disk_free};
use crate::store::suppress::Suppressions;
use crate::store::{Handle, ReviewRequest, StoreError};
use crate::time::format_time;

pub use client::MqttError;
use client::{ConnectSettings, Polled};
use commands::{Command, CommandResult};

/// QoS 1 publishes of outbox rows in flight at once.
const WINDOW: usize = 64;

/// What the publisher shares with the rest of the agent.
pub struct Shared {
    /// The store's outbox and the review path of commands (its wake is the publisher's).
    pub delivery: Delivery,
    pub metrics: Arc<Metrics>,
    pub connected: AtomicBool,
    pub delivered: AtomicU64,
}

/// Topic names of one site.
#[derive(Debug, Clone)]
pub struct Topics {
    pub prefix: String,
}

impl Topics {
    pub fn new(mqtt: &MqttConfig, site: &str) -> Topics {
        Topics {
            prefix: mqtt.prefix(site),
        }
    }
    pub fn incident(&self, camera: &str) -> String {
        format!("{}/{camera}/incident", self.prefix)
    }
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }
    pub fn heartbeat(&self) -> String {
        format!("{}/heartbeat", self.prefix)
    }
    pub fn commands(&self) -> String {
        format!("{}/cmd/#", self.prefix)
    }
    pub fn command_result(&self) -> String {
        format!("{}/cmd/result", self.prefix)
    }
    /// The daily statistics summary (retained, QoS 1).
    pub fn daily_summary(&self) -> String {
        format!("{}/stats/daily", self.prefix)
    }
}

/// Static facts the publisher needs.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    pub connect: ConnectSettings,
    pub topics: Topics,
    pub site: String,
    pub box_id: String,
    pub cameras: Vec<String>,
    pub heartbeat_every: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub offset: FixedOffset,
    pub data_dir: std::path::PathBuf,
    pub started_at: String,
}

impl PublisherSettings {
    pub fn from_config(config: &Config, mqtt: &MqttConfig) -> Result<PublisherSettings, MqttError> {
        let topics = Topics::new(mqtt, &config.site.id);
        let offline = json!({
            "state": "offline",
            "reason": "connection lost",
            "site": config.site.id,
            "box_id": mqtt.box_id,
        });
        let connect = ConnectSettings::from_config(
            mqtt,
            mqtt.client_id(&config.site.id),
            topics.status(),
            offline.to_string().into_bytes(),
        )?;
        Ok(PublisherSettings {
            connect,
            topics,
            site: config.site.id.clone(),
            box_id: mqtt.box_id.clone(),
            cameras: config
                .cameras
                .iter()
                .filter(|c| c.enabled)
                .map(|c| c.id.clone())
                .collect(),
            heartbeat_every: mqtt.heartbeat_every,
            reconnect_min: mqtt.reconnect_min,
            reconnect_max: mqtt.reconnect_max,
            offset: config.site.timezone,
            data_dir: config.storage.data_dir.clone(),
            started_at: format_time(chrono::Utc::now().timestamp_micros(), config.site.timezone),
        })
    }
}

/// How a session ended.
enum SessionEnd {
    /// Shutdown requested and handled.
    Shutdown,
    /// The connection failed; reconnect.
    Lost(MqttError),
}

/// Runs until `shutdown` turns true. After that it keeps delivering (reconnecting if it
/// must) until the outbox is empty or `drain` has passed, then announces `offline` and
/// disconnects.
pub async fn run(
    settings: PublisherSettings,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let mut backoff = settings.reconnect_min;
    let mut episode = FailureEpisode::default();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if *shutdown.borrow() && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + drain);
        }
        if let Some(d) = deadline
            && (tokio::time::Instant::now() >= d || outbox_len(&shared) == 0)
        {
            return;
        }
        let outcome = match Session::new(&settings, &shared) {
            Ok(mut session) => {
                let end = session
                    .run(&mut shutdown, &mut deadline, drain, &mut episode)
                    .await;
                (end, session.connected_at.is_some())
            }
            Err(reason) => (SessionEnd::Lost(reason), false),
        };
        match outcome {
            (SessionEnd::Shutdown, _) => return,
            (SessionEnd::Lost(reason), was_connected) => {
                shared.connected.store(false, Ordering::Relaxed);
                if was_connected {
                    backoff = settings.reconnect_min;
                }
                // Each distinct failure is logged once per episode; repeats (a broker that
                // keeps refusing, an expired certificate, a connection that keeps dropping)
                // are counted and summed up when the connection is stable again.
                if episode.failure(&reason.to_string()) {
                    if was_connected {
                        tracing::warn!(broker = %broker(&settings), "MQTT connection lost: {reason}; reconnecting");
                    } else {
                        tracing::error!(broker = %broker(&settings), "MQTT connect failed: {reason}; retrying with backoff");
                    }
                }
            }
        }
        // Exponential backoff with full jitter: many boxes reconnecting after a broker
        // restart spread out instead of stampeding.
        let wait = rand::rng().random_range(backoff.mul_f64(0.5)..=backoff);
        backoff = (backoff * 2).min(settings.reconnect_max);
        let until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + wait);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = tokio::time::sleep_until(until) => {}
            _ = shutdown.changed(), if deadline.is_none() => {}
        }
    }
}

/// How long a connection must stay up before an episode of failures counts as over.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// One episode of connection trouble: from the first failure until a connection has stayed
/// up for [`STABLE_AFTER`]. Within it, each kind of failure is logged once and repeats are
/// only counted.
#[derive(Debug, Default)]
struct FailureEpisode {
    /// Kinds of failure logged in this episode.
    seen: Vec<String>,
    /// Failures not logged because their kind was.
    repeats: u64,
    /// Whether a successful connection was logged in this episode.
    connect_logged: bool,
}

impl FailureEpisode {
    /// Records a failure; true when it is a new kind for this episode (log it).
    fn failure(&mut self, reason: &str) -> bool {
        let kind = failure_kind(reason);
        if self.seen.contains(&kind) {
            self.repeats += 1;
            return false;
        }
        self.seen.push(kind);
        true
    }

    /// A connection was made; true when it should be logged (the first of the episode).
    fn connected(&mut self) -> bool {
        !std::mem::replace(&mut self.connect_logged, true)
    }

    /// The connection has been stable for a while: ends the episode. Returns the failures
    /// left unlogged, when there were any, for one summary line.
    fn stable(&mut self) -> Option<u64> {
        let repeats = std::mem::take(&mut self.repeats);
        self.seen.clear();
        self.connect_logged = false;
        (repeats > 0).then_some(repeats)
    }
}

/// A failure with its digits left out, so that messages which differ only in a time or a
/// counter (rustls puts the current time in an expired-certificate error) are one kind.
fn failure_kind(reason: &str) -> String {
    reason.chars().filter(|c| !c.is_ascii_digit()).collect()
}

fn outbox_len(shared: &Shared) -> u64 {
    shared.delivery.store.outbox_stats().map_or(0, |s| s.events)
}

fn broker(settings: &PublisherSettings) -> String {
    format!("{}:{}", settings.connect.host, settings.connect.port)
}

struct Session<'a> {
    settings: &'a PublisherSettings,
    shared: &'a Shared,
    client: client::Client,
    events: client::EventLoop,
    /// Outbox ids of QoS 1 publishes handed to the client, awaiting their packet id, in
    /// order; `None` for QoS 1 publishes that are not outbox rows.
    sent: VecDeque<Option<i64>>,
    /// Packet id -> outbox id, awaiting PUBACK.
    in_flight: HashMap<u16, Option<i64>>,
    /// Highest outbox id handed out in this session.
    cursor: i64,
    outbox_in_flight: usize,
    connected: bool,
    /// When this session's connection was made (none: it never connected).
    connected_at: Option<std::time::Instant>,
    /// The store health the retained status last said.
    status_store_ok: Option<bool>,
    last_counts: HashMap<String, (u64, u64)>,
    last_beat: std::time::Instant,
}

impl<'a> Session<'a> {
    fn new(settings: &'a PublisherSettings, shared: &'a Shared) -> Result<Session<'a>, MqttError> {
        let (client, events) = client::connect(&settings.connect)?;
        Ok(Session {
            settings,
            shared,
            client,
            events,
            sent: VecDeque::new(),
            in_flight: HashMap::new(),
            cursor: 0,
            outbox_in_flight: 0,
            connected: false,
            connected_at: None,
            status_store_ok: None,
            last_counts: HashMap::new(),
            last_beat: std::time::Instant::now(),
        })
    }

    /// Serves one connection. `deadline` is set once shutdown is asked for (here or before
    /// this session): from then on the session ends when the outbox is empty or the
    /// deadline passes.
    async fn run(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        deadline: &mut Option<tokio::time::Instant>,
        drain: Duration,
        episode: &mut FailureEpisode,
    ) -> SessionEnd {
        let mut heartbeat = tokio::time::interval(self.settings.heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wake = Arc::clone(&self.shared.delivery.wake);
        loop {
            if let Some(d) = *deadline
                && self.connected
            {
                let empty = self.outbox_in_flight == 0 && outbox_len(self.shared) == 0;
                if empty || tokio::time::Instant::now() >= d {
                    self.goodbye().await;
                    return SessionEnd::Shutdown;
                }
            }
            let tick = tokio::time::sleep(Duration::from_millis(100));
            tokio::select! {
                polled = self.events.poll() => match polled {
                    Ok(event) => {
                        if matches!(event, Polled::Connected) {
                            self.connected_at = Some(std::time::Instant::now());
                            if episode.connected() {
                                tracing::info!(broker = %broker(self.settings), client_id = %self.settings.connect.client_id, "MQTT connected");
                            }
                        }
                        if let Err(reason) = self.handle(event) {
                            return SessionEnd::Lost(reason);
                        }
                    }
                    Err(reason) => return SessionEnd::Lost(reason),
                },
                _ = wake.notified(), if self.connected => self.fill(),
                _ = heartbeat.tick(), if self.connected => {
                    if self.connected_at.is_some_and(|t| t.elapsed() >= STABLE_AFTER)
                        && let Some(repeats) = episode.stable()
                    {
                        tracing::info!(broker = %broker(self.settings), repeats, "MQTT connection stable again; {repeats} repeated failure(s) were not logged one by one");
                    }
                    self.heartbeat();
                }
                _ = shutdown.changed(), if deadline.is_none() => {
                    *deadline = Some(tokio::time::Instant::now() + drain);
                }
                _ = tick, if deadline.is_some() => {
                    if let Some(d) = *deadline
                        && !self.connected
                        && tokio::time::Instant::now() >= d
                    {
                        return SessionEnd::Shutdown;
                    }
                }
            }
        }
    }

    fn handle(&mut self, event: Polled) -> Result<(), MqttError> {
        match event {
            Polled::Connected => {
                self.connected = true;
                self.shared.connected.store(true, Ordering::Relaxed);
                self.publish_status()?;
                self.client.subscribe(&self.settings.topics.commands())?;
                self.fill();
            }
            Polled::SentPublish(pkid) => {
                if pkid != 0 {
                    let row = self.sent.pop_front().flatten();
                    self.in_flight.insert(pkid, row);
                }
            }
            Polled::PubAck(pkid) => {
                if let Some(Some(id)) = self.in_flight.remove(&pkid) {
                    self.outbox_in_flight = self.outbox_in_flight.saturating_sub(1);
                    let deleted = self.shared.delivery.store.outbox_delete(&[id]);
                    if let Err(e) = deleted {
                        tracing::error!("outbox delete failed: {e}");
                    }
                    self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                    self.fill();
                }
            }
            Polled::Message {
                topic,
                payload,
                retained,
            } => self.command(&topic, &payload, retained)?,
            Polled::Other => {}
        }
        Ok(())
    }

    fn send(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        qos1: bool,
        retain: bool,
        row: Option<i64>,
    ) -> Result<(), MqttError> {
        self.client.publish(topic, payload, qos1, retain)?;
        if qos1 {
            self.sent.push_back(row);
        }
        Ok(())
    }

    /// Hands the next outbox rows to the client, up to the window.
    fn fill(&mut self) {
        if !self.connected || self.outbox_in_flight >= WINDOW {
            return;
        }
        let rows = self
            .shared
            .delivery
            .store
            .outbox_after(self.cursor, WINDOW - self.outbox_in_flight);
        match rows {
            Ok(rows) => {
                for row in rows {
                    self.cursor = row.id;
                    if self
                        .send(&row.topic, row.payload, true, row.retain, Some(row.id))
                        .is_err()
                    {
                        // The request channel is closed: the session is ending anyway and
                        // the next one starts from the outbox again.
                        return;
                    }
                    self.outbox_in_flight += 1;
                }
            }
            Err(e) => tracing::error!("reading the outbox failed: {e}"),
        }
    }

    /// The retained `online` status, with whether the store takes writes; sent at every
    /// connection and again whenever the store's health changes.
    fn publish_status(&mut self) -> Result<(), MqttError> {
        let store = self.shared.metrics.store_health.report();
        self.status_store_ok = Some(store.ok);
        let status = json!({
            "state": "online",
            "site": self.settings.site,
            "box_id": self.settings.box_id,
            "version": env!("CARGO_PKG_VERSION"),
            "cameras": self.settings.cameras,
            "started_at": self.settings.started_at,
            "store": store,
        });
        self.send(
            &self.settings.topics.status(),
            status.to_string().into_bytes(),
            true,
            true,
            None,
        )
    }

    fn heartbeat(&mut self) {
        if self.status_store_ok != Some(self.shared.metrics.store_health.is_ok()) {
            let _ = self.publish_status();
        }
        let elapsed = self.last_beat.elapsed().as_secs_f64().max(1e-3);
        self.last_beat = std::time::Instant::now();
        let metrics = &self.shared.metrics;
        let cameras: Vec<_> = metrics
            .cameras()
            .iter()
            .map(|(id, m)| {
                let frames_in = m.frames_in.load(Ordering::Relaxed);
                let frames_out = m.frames_inferred.load(Ordering::Relaxed);
                let (prev_in, prev_out) = self
                    .last_counts
                    .insert(id.clone(), (frames_in, frames_out))
                    .unwrap_or((frames_in, frames_out));
                json!({
                    "id": id,
                    "fps_in": ((frames_in - prev_in) as f64 / elapsed * 10.0).round() / 10.0,
                    "fps_out": ((frames_out - prev_out) as f64 / elapsed * 10.0).round() / 10.0,
                    "frames_dropped": m.frames_dropped.load(Ordering::Relaxed),
                    "decode_errors": m.decode_errors.load(Ordering::Relaxed),
                })
            })
            .collect();
        let outbox = self
            .shared
            .delivery
            .store
            .outbox_stats()
            .unwrap_or_default();
        let now_us = chrono::Utc::now().timestamp_micros();
        let latency = metrics.inference_latency_ms();
        let beat = json!({
            "site": self.settings.site,
            "box_id": self.settings.box_id,
            "at": format_time(now_us, self.settings.offset),
            "uptime_s": metrics.uptime_s().round(),
            "cameras": cameras,
            "inference_ms": latency.map(|(p50, p95)| json!({"p50": p50, "p95": p95})),
            "outbox": {
                "depth": outbox.events,
                "bytes": outbox.bytes,
                "oldest_age_s": outbox.oldest_created_at_us.map(|t| ((now_us - t) as f64 / 1e6).max(0.0).round()),
                "dropped_total": outbox.dropped_total,
                "delivered": self.shared.delivered.load(Ordering::Relaxed),
            },
            "disk_free_bytes": disk_free(&self.settings.data_dir),
            "store": metrics.store_health.report(),
        });
        let _ = self.send(
            &self.settings.topics.heartbeat(),
            beat.to_string().into_bytes(),
            false,
            false,
            None,
        );
    }

    fn command(&mut self, topic: &str, payload: &[u8], retained: bool) -> Result<(), MqttError> {
        let Some(name) = topic.strip_prefix(&format!("{}/cmd/", self.settings.topics.prefix))
        else {
            return Ok(());
        };
        if name == "result" {
            // Our own answers come back on the subscription.
            return Ok(());
        }
        if retained {
            // A retained command is replayed by the broker at every subscription, so at
            // every restart: applying it would review an incident again each time.
            tracing::warn!(
                command = name,
                id = commands::request_id(payload).as_deref().unwrap_or(""),
                "ignored a retained command (publish commands without the retain flag)"
            );
            return Ok(());
        }
        let result = match commands::parse(name, payload) {
            Err(reason) => {
                tracing::warn!(command = name, "rejected a command: {reason}");
                CommandResult {
                    command: name.to_string(),
                    id: commands::request_id(payload),
                    ok: false,
                    error: Some(reason.to_string()),
                    event_id: None,
                }
            }
            Ok(Command::Ping(ping)) => CommandResult {
                command: "ping".into(),
                id: ping.id,
                ok: true,
                error: None,
                event_id: None,
            },
            Ok(Command::Review(review)) => {
                let outcome = self
                    .shared
                    .delivery
                    .review(
                        &ReviewRequest {
                            incident_id: &review.incident_id,
                            verdict: review.verdict,
                            reviewer: &review.reviewer,
                            note: &review.note,
                            at_us: chrono::Utc::now().timestamp_micros(),
                        },
                        self.settings.offset,
                    )
                    .map_err(|e| e.to_string());
                match outcome {
                    Ok(event) => {
                        tracing::info!(incident = %review.incident_id, reviewer = %review.reviewer, "review stored");
                        self.fill();
                        CommandResult {
                            command: "review".into(),
                            id: review.id,
                            ok: true,
                            error: None,
                            event_id: event["event_id"].as_str().map(String::from),
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(command = "review", "rejected a command: {reason}");
                        CommandResult {
                            command: "review".into(),
                            id: review.id,
                            ok: false,
                            error: Some(reason),
                            event_id: None,
                        }
                    }
                }
            }
        };
        let payload = serde_json::to_vec(&result).unwrap_or_default();
        self.send(
            &self.settings.topics.command_result(),
            payload,
            true,
            false,
            None,
        )
    }

    /// A clean goodbye: the retained status says offline (the Last Will only fires on an
    /// unclean loss).
    async fn goodbye(&mut self) {
        let status = json!({
            "state": "offline",
            "reason": "shutdown",
            "site": self.settings.site,
            "box_id": self.settings.box_id,
        });
        if self
            .send(
                &self.settings.topics.status(),
                status.to_string().into_bytes(),
                true,
                true,
                None,
            )
            .is_ok()
        {
            // Let the event loop flush it (bounded: a dead broker must not hold us up).
            let deadline = tokio::time::sleep(Duration::from_secs(2));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    polled = self.events.poll() => match polled {
                        Ok(Polled::PubAck(_)) | Err(_) => break,
                        Ok(_) => {}
                    },
                    _ = &mut deadline => break,
                }
            }
        }
        self.client.disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), self.events.poll()).await;
        self.shared.connected.store(false, Ordering::Relaxed);
    }
}

/// Where incident events go after the rules: the store, and (with MQTT) its outbox.
///
/// When the store cannot write (a full disk), an event is not lost: it waits in a bounded
/// in-memory queue, in order, and is written before any later event as soon as the store
/// takes writes again (retried at every new event and every second by
/// [`Delivery::retry_held`]). The episode is logged once, counted, and shown by `/healthz`,
/// `/metrics` and the MQTT heartbeat and status.
#[derive(Clone)]
pub struct Delivery {
    store: Handle,
    /// `None` without MQTT: events are stored but not queued.
    topics: Option<Topics>,
    /// Wakes the publisher when the outbox has a new row.
    wake: Arc<Notify>,
    /// Dismissal memory shared with the cameras' analytics.
    suppressions: Option<Arc<Suppressions>>,
    /// Events the store could not take yet, oldest first.
    held: Arc<Mutex<VecDeque<crate::incidents::IncidentEvent>>>,
    health: Arc<crate::metrics::StoreHealth>,
    /// Wakes the HTTP actions' sender after a write (the store queues the actions).
    action_wake: Option<crossbeam_channel::Sender<()>>,
}

/// Events held in memory at most while the store cannot write (a few KiB each).
pub const MAX_HELD_EVENTS: usize = 4096;

impl Delivery {
    pub fn new(
        store: Handle,
        topics: Option<Topics>,
        wake: Arc<Notify>,
        suppressions: Option<Arc<Suppressions>>,
        health: Arc<crate::metrics::StoreHealth>,
    ) -> Delivery {
        Delivery {
            store,
            topics,
            wake,
            suppressions,
            held: Arc::default(),
            health,
            action_wake: None,
        }
    }

    /// Has the store queue the actions each stored event triggers (in the event's
    /// transaction), and wakes their sender after each write.
    pub fn with_actions(
        mut self,
        actions: Arc<crate::actions::Actions>,
        wake: crossbeam_channel::Sender<()>,
    ) -> Delivery {
        self.store
            .set_action_bodies(Arc::new(move |event| actions.bodies_for(event)));
        self.action_wake = Some(wake);
        self
    }

    /// The store this delivery writes to.
    pub fn store(&self) -> &Handle {
        &self.store
    }

    /// The site's topics; `None` without MQTT.
    pub fn topics(&self) -> Option<&Topics> {
        self.topics.as_ref()
    }

    /// The dismissal memory the cameras' analytics consult.
    pub fn suppressions(&self) -> Option<&Arc<Suppressions>> {
        self.suppressions.as_ref()
    }

    /// Tells the publisher that the outbox has new rows.
    pub fn wake_publisher(&self) {
        self.wake.notify_one();
    }

    /// A station's verdict, from the review page or the MQTT `review` command alike: the
    /// store records it (with its `reviewed` event in the outbox, and a dismissal in the
    /// dismissal memory) and the publisher is woken. Returns the `reviewed` event.
    pub fn review(
        &self,
        request: &ReviewRequest<'_>,
        offset: FixedOffset,
    ) -> Result<serde_json::Value, StoreError> {
        let reviewed = self.store.review(
            request,
            offset,
            |camera| self.topics.as_ref().map(|t| t.incident(camera)),
            self.suppressions.as_deref(),
        )?;
        // The `reviewed` event may trigger actions (`on = ["reviewed"]`), queued in its
        // transaction: their sender is woken as for any stored event, not left to its poll.
        self.wake.notify_one();
        self.wake_actions();
        Ok(reviewed)
    }

    fn wake_actions(&self) {
        if let Some(wake) = &self.action_wake {
            let _ = wake.try_send(());
        }
    }

    /// Stores the event (renumbering it after any reviews) and queues it for MQTT; if the
    /// store cannot write now, holds it (see the type's documentation).
    pub fn record(&self, event: &mut crate::incidents::IncidentEvent) {
        let mut held = self.held();
        // Earlier events first: an incident's events reach the store in order.
        self.write_held(&mut held);
        if held.is_empty() {
            match self.write(event) {
                Ok(()) => return,
                Err(e) => self.write_failed(&e, held.len() + 1),
            }
        }
        hold(&mut held, event.clone(), &self.health);
    }

    /// The events held in memory. A panic while they were locked left a queue of whole
    /// events (each push and pop is one step), so a poisoned lock is taken over.
    fn held(&self) -> std::sync::MutexGuard<'_, VecDeque<crate::incidents::IncidentEvent>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes what is held, if the store takes writes again (called every second).
    /// Counts a line crossing in the store, for the statistics. A crossing the store cannot
    /// take (a full disk) is logged and not counted: it is a tally, not an incident (a
    /// crossing in a forbidden direction is also an incident, which is held like any).
    pub fn record_crossing(&self, camera_id: &str, crossing: &crate::rules::line::Crossing) {
        if let Err(e) = self.store.record_crossing(camera_id, crossing) {
            tracing::warn!(camera = %camera_id, line = %crossing.line, "cannot count the line crossing: {e}");
        }
    }

    pub fn retry_held(&self) {
        let mut held = self.held();
        if !held.is_empty() {
            self.write_held(&mut held);
        }
    }

    /// At exit: a last try for the events the store could not take; those still held are
    /// gone with the process, so the log says how many.
    pub fn flush_held_at_exit(&self) {
        self.retry_held();
        let held = self.held_count();
        if held > 0 {
            tracing::error!(
                events = held,
                "stopping while the store still cannot write: these incident events are lost"
            );
        }
    }

    /// Events held in memory now.
    pub fn held_count(&self) -> usize {
        self.held().len()
    }

    fn write(&self, event: &mut crate::incidents::IncidentEvent) -> Result<(), StoreError> {
        let topic = self.topics.as_ref().map(|t| t.incident(&event.camera.id));
        self.store.record(event, topic.as_deref())?;
        self.wake.notify_one();
        self.wake_actions();
        Ok(())
    }

    fn write_held(&self, held: &mut VecDeque<crate::incidents::IncidentEvent>) {
        let had = held.len();
        while let Some(event) = held.front_mut() {
            if let Err(e) = self.write(event) {
                self.write_failed(&e, held.len());
                break;
            }
            held.pop_front();
        }
        self.health
            .held_events
            .store(held.len() as u64, Ordering::Relaxed);
        if held.is_empty() && self.health.recovered() {
            tracing::info!(
                stored = had,
                "the store takes writes again: every held incident event is stored"
            );
        }
    }

    fn write_failed(&self, error: &StoreError, held: usize) {
        if self.health.failed(&error.to_string()) {
            tracing::error!(
                held,
                limit = MAX_HELD_EVENTS,
                "cannot store incident events: {error}; holding them in memory and retrying every second (logged once until it recovers)"
            );
        }
    }

    /// The evidence worker could not record files or an evidence error: counted with the
    /// store's other write failures, logged once per episode.
    pub fn evidence_write_failed(&self, error: &str) {
        if self.health.failed(error) {
            tracing::error!(
                "cannot record evidence in the store: {error}; retrying (logged once until it recovers)"
            );
        }
    }

    /// The evidence worker's store writes work again.
    pub fn evidence_write_recovered(&self) {
        if self.held_count() == 0 && self.health.recovered() {
            tracing::info!("the store takes writes again");
        }
    }

    /// At start: closes what the previous run left open, for the cameras this run watches
    /// (`restarted`: this run cannot follow those stays) and for cameras no longer in the
    /// config (`reconfigured`). Without cameras (`run --no-cameras`) nothing is closed: the
    /// next run that watches them does it. Returns how many were closed.
    pub fn close_left_open(
        &self,
        watched: &[String],
        offset: FixedOffset,
    ) -> Result<usize, StoreError> {
        if watched.is_empty() {
            return Ok(0);
        }
        let cameras = self.store.cameras_with_open_incidents()?;
        let mut closed = 0;
        for camera in cameras {
            let reason = if watched.contains(&camera) {
                crate::rules::CloseReason::Restarted
            } else {
                crate::rules::CloseReason::Reconfigured
            };
            closed += self.close_open_incidents(&camera, reason, offset)?;
        }
        Ok(closed)
    }

    /// Closes the incidents of `camera` still open in the store with `reason`: at start for
    /// those a previous run left open, at a reload for a changed camera. Each `closed` event
    /// goes out through the outbox like the rules' own.
    pub fn close_open_incidents(
        &self,
        camera: &str,
        reason: crate::rules::CloseReason,
        offset: FixedOffset,
    ) -> Result<usize, StoreError> {
        let topic = self.topics.as_ref().map(|t| t.incident(camera));
        let closed = self.store.close_open_incidents(
            camera,
            reason,
            chrono::Utc::now().timestamp_micros(),
            offset,
            topic.as_deref(),
        )?;
        for event in &closed {
            tracing::info!(
                incident = event["incident_id"].as_str().unwrap_or_default(),
                camera = event["camera"]["id"].as_str().unwrap_or_default(),
                kind = event["kind"].as_str().unwrap_or_default(),
                close_reason = reason.as_str(),
                "closed an incident left open"
            );
        }
        if !closed.is_empty() {
            self.wake.notify_one();
            self.wake_actions();
        }
        Ok(closed.len())
    }
}

/// Holds an event while the store cannot write. Over the bound the oldest `updated` event
/// goes first (a later one supersedes it, as in the outbox), then the oldest of any kind;
/// each loss is counted and logged.
fn hold(
    held: &mut VecDeque<crate::incidents::IncidentEvent>,
    event: crate::incidents::IncidentEvent,
    health: &crate::metrics::StoreHealth,
) {
    if held.len() >= MAX_HELD_EVENTS {
        let victim = held
            .iter()
            .position(|e| e.state == crate::incidents::EventState::Updated)
            .unwrap_or(0);
        if let Some(lost) = held.remove(victim) {
            health.dropped_total.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                incident = %lost.incident_id,
                state = ?lost.state,
                "the store has not taken writes for {MAX_HELD_EVENTS} events: an event held in memory is given up"
            );
        }
    }
    held.push_back(event);
    health
        .held_events
        .store(held.len() as u64, Ordering::Relaxed);
}

/// The publisher on its own thread and runtime, for the synchronous parts of the agent.
pub struct Background {
    shutdown: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
    pub shared: Arc<Shared>,
}

impl Background {
    /// Starts publishing; on `stop`, delivery continues for up to `drain`.
    pub fn start(
        settings: PublisherSettings,
        shared: Arc<Shared>,
        drain: Duration,
    ) -> std::io::Result<Background> {
        let (shutdown, receiver) = watch::channel(false);
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(run(settings, task_shared, receiver, drain)),
                    Err(e) => tracing::error!("cannot start the publisher runtime: {e}"),
                }
            })?;
        Ok(Background {
            shutdown,
            thread,
            shared,
        })
    }

    /// Stops after delivering what it can within the drain time; returns the events still
    /// waiting in the outbox (safe there for the next run).
    pub fn stop(self) -> u64 {
        let _ = self.shutdown.send(true);
        let _ = self.thread.join();
        outbox_len(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_failure_is_logged_once_per_episode_and_counted() {
        let mut episode = FailureEpisode::default();
        let expired = |t: u32| {
            format!(
                "invalid peer certificate: certificate expired: verification time {t} (UNIX), but certificate is not valid after 1700000000"
            )
        };
        assert!(episode.failure(&expired(1_764_000_001)));
        for t in 2..=42 {
            assert!(!episode.failure(&expired(1_764_000_000 + t)), "repeat {t}");
        }
        // Another kind of failure in the same episode is news.
        assert!(episode.failure("Connection refused (os error 111)"));
        assert!(episode.connected(), "the first connection is logged");
        assert!(!episode.connected(), "flapping reconnects are not");
        assert_eq!(episode.stable(), Some(41));
        // A new episode logs again.
        assert!(episode.failure(&expired(1_764_100_000)));
        assert!(episode.connected());
        assert_eq!(episode.stable(), None, "nothing was held back");
    }

    #[test]
    fn a_review_wakes_the_action_sender_as_a_stored_event_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = Handle::open(dir.path(), crate::store::OutboxLimits::default()).unwrap();
        let (wake, woken) = crossbeam_channel::bounded(1);
        let delivery = Delivery::new(store, None, Arc::default(), None, Arc::default())
            .with_actions(Arc::new(crate::actions::Actions::default()), wake);
        let mut opened = crate::incidents::test_events::opened();
        delivery.record(&mut opened);
        assert!(woken.try_recv().is_ok(), "a stored event wakes the sender");
        let request = ReviewRequest {
            incident_id: &opened.incident_id,
            verdict: crate::incidents::Verdict::Confirmed,
            reviewer: "王网格员",
            note: "",
            at_us: 1_764_000_100_000_000,
        };
        let offset = FixedOffset::east_opt(8 * 3600).unwrap();
        delivery.review(&request, offset).unwrap();
        assert!(woken.try_recv().is_ok(), "so does a review");
    }

    #[test]
    fn a_stable_connection_without_failures_reports_nothing() {
        let mut episode = FailureEpisode::default();
        assert!(episode.connected());
        assert_eq!(episode.stable(), None);
    }
}
