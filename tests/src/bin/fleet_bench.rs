//! Fleet simulation (a benchmark, not a test): N boxes deliver incident events through
//! gridwatch's real delivery path (SQLite store and outbox, the rumqttc publisher, one
//! connection each) to one mosquitto on loopback, and one platform subscriber receives them.
//!
//! `cargo run --release -p gridwatch-e2e --bin fleet-bench -- [AGENTS...] [--events N]`
//! (default: 1 20 200 agents, 12 events each). Each box's events are the lifecycle of three
//! incidents (opened, two updates, closed), built by the same incident code a replay uses.
//! Latency is measured from the moment the event is committed to the store (when a box
//! "creates" it) to its receipt by the subscriber. Inference is not part of this: every
//! box would run its own detector, which `gridwatch bench` measures.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridwatch::config::Config;
use gridwatch::incidents::{IncidentEvent, IncidentLog};
use gridwatch::metrics::Metrics;
use gridwatch::rules::{CloseReason, Kind, RuleEvent, Signal, Transition};
use gridwatch_e2e::broker::{Broker, BrokerOptions, Subscriber};

struct Row {
    agents: usize,
    events: usize,
    received: usize,
    lost: usize,
    seconds: f64,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
}

fn events_for(config: &Config, per_agent: usize) -> Vec<IncidentEvent> {
    let mut log = IncidentLog::new(config, &config.cameras[0], &[]);
    let base = chrono::Utc::now().timestamp_micros();
    let mut out = Vec::new();
    let mut key = 0u64;
    while out.len() < per_agent {
        for (i, transition) in [
            Transition::Open,
            Transition::Update,
            Transition::Update,
            Transition::Close(CloseReason::Recovered),
        ]
        .into_iter()
        .enumerate()
        {
            let change = RuleEvent {
                kind: Kind::CameraOffline,
                zone: None,
                key: (0, key),
                transition,
                at_us: base + key as i64 * 600_000_000 + i as i64 * 60_000_000,
                started_at_us: base + key as i64 * 600_000_000,
                ended_at_us: None,
                objects: Vec::new(),
                count: 0,
                peak_count: 0,
                confidence: 1.0,
                confirmed: true,
                signals: vec![Signal::NoFrames],
                best_at_us: base,
            };
            out.push(log.record(&change));
        }
        key += 1;
    }
    out.truncate(per_agent);
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(agents: usize, per_agent: usize) -> Row {
    let broker = Broker::start(BrokerOptions::default());
    let subscriber = Subscriber::start(broker.port, "gridwatch/v1/+/+/incident", None);
    let work = tempfile::tempdir().expect("temp dir");
    let committed: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut boxes = Vec::new();
    for i in 0..agents {
        let dir = work.path().join(format!("box-{i}"));
        let text = format!(
            "[site]\nid = \"site-{i}\"\ngrid_code = \"4403050010{i:02}\"\n[storage]\ndata_dir = \"{}\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nbox_id = \"nvr\"\nheartbeat_every = \"30s\"\n[[cameras]]\nid = \"cam\"\nurl = \"x\"\n",
            dir.display(),
            broker.port
        );
        let config = Config::parse(&text, Path::new("fleet.toml")).expect("fleet config");
        // The agent's own wiring: the store, its delivery and the publisher.
        let (delivery, background) = gridwatch::services::start_delivery(
            &config,
            true,
            Duration::from_secs(60),
            Arc::new(Metrics::new(&["cam".to_string()])),
        )
        .expect("the box's delivery");
        let (Some(delivery), Some(background)) = (delivery, background) else {
            panic!("a box with [mqtt] has a delivery and a publisher");
        };
        boxes.push((delivery, background, events_for(&config, per_agent)));
    }
    // Let every box connect, then create the events.
    std::thread::sleep(Duration::from_millis(500 + 10 * agents as u64));
    let started = Instant::now();
    let threads: Vec<_> = boxes
        .iter()
        .map(|(delivery, _, events)| {
            let delivery = delivery.clone();
            let mut events = events.clone();
            let committed = Arc::clone(&committed);
            std::thread::spawn(move || {
                for event in &mut events {
                    delivery.record(event);
                    committed
                        .lock()
                        .unwrap()
                        .insert(event.event_id.clone(), Instant::now());
                    // Incidents trickle in, as they do from cameras.
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("producer");
    }
    let total = agents * per_agent;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && subscriber.on_topic("/incident").len() < total {
        std::thread::sleep(Duration::from_millis(50));
    }
    let messages = subscriber.on_topic("/incident");
    let committed = committed.lock().unwrap();
    let mut first_receipt: HashMap<String, Instant> = HashMap::new();
    for m in &messages {
        if let Some(id) = m.json()["event_id"].as_str() {
            first_receipt.entry(id.to_string()).or_insert(m.received);
        }
    }
    let mut latencies: Vec<f64> = committed
        .iter()
        .filter_map(|(id, at)| {
            first_receipt
                .get(id)
                .map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1e3)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let last = first_receipt.values().max().copied().unwrap_or(started);
    for (_, background, _) in boxes {
        background.stop();
    }
    Row {
        agents,
        events: total,
        received: first_receipt.len(),
        lost: total
            - committed
                .keys()
                .filter(|id| first_receipt.contains_key(*id))
                .count(),
        seconds: last.duration_since(started).as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p95_ms: percentile(&latencies, 0.95),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut per_agent = 12;
    if let Some(i) = args.iter().position(|a| a == "--events") {
        per_agent = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(12);
        args.drain(i..=(i + 1).min(args.len() - 1));
    }
    let mut sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![1, 20, 200];
    }
    let rows: Vec<Row> = sizes.iter().map(|&n| run(n, per_agent)).collect();
    let base = &rows[0];
    println!(
        "fleet simulation: one mosquitto on loopback, {per_agent} events per box, one platform subscriber"
    );
    println!();
    println!(
        "| boxes | events | received | lost | events/s | p50 ms | p95 ms | max ms | p95 vs {} box(es) |",
        base.agents
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2}x |",
            r.agents,
            r.events,
            r.received,
            r.lost,
            r.received as f64 / r.seconds.max(1e-9),
            r.p50_ms,
            r.p95_ms,
            r.max_ms,
            r.p95_ms / base.p95_ms
        );
    }
    if rows.iter().any(|r| r.lost > 0) {
        eprintln!("LOST EVENTS: delivery is broken");
        std::process::exit(1);
    }
}
