//! Runs the whole scenario suite and prints precision and recall of incidents.
//!
//! `cargo run -p gridwatch-e2e --bin scenario-report` (after scripts/setup.sh). Uses the
//! dev-profile gridwatch binary unless GRIDWATCH_BIN names another.
//!
//! With `--compare-regions` every scenario is replayed twice, with its default detection
//! regions (`auto`) and with `regions = "full"` (one whole-picture pass), one after the
//! other, and a table compares incidents against the ground truth, inferences and CPU
//! seconds (decode, detection and rules: the replay process's user + system time) per minute
//! of stream. Docs: docs/BENCHMARKS.md, "Detection regions".

use gridwatch_e2e::scenario::{self, Outcome, Scenario};
use std::path::Path;

fn main() {
    let compare = std::env::args().any(|a| a == "--compare-regions");
    let out = tempfile::tempdir().expect("temporary directory");
    let mut outcomes = Vec::new();
    let mut rows = Vec::new();
    for name in scenario::all_names() {
        let s = scenario::load(&name);
        eprintln!(
            "running {name}: {}",
            s.description
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        // Derive the clip first so its encoding is not counted as the replay's CPU.
        scenario::clip(&s);
        let (auto, auto_cpu) = measured(&s, out.path(), "");
        for p in &auto.problems {
            eprintln!("  {p}");
        }
        if compare {
            let (full, full_cpu) = measured(&s, out.path(), "regions = \"full\"");
            rows.push(Comparison {
                auto_cpu,
                full_cpu,
                full,
            });
        }
        outcomes.push(auto);
    }
    print!("{}", scenario::report(&outcomes));
    if compare {
        print!("\n{}", comparison_table(&outcomes, &rows));
    }
}

struct Comparison {
    auto_cpu: f64,
    full_cpu: f64,
    full: Outcome,
}

/// Replays the scenario with `camera_keys` and returns its outcome and the CPU seconds
/// (user + system) the replay process used.
fn measured(s: &Scenario, out: &Path, camera_keys: &str) -> (Outcome, f64) {
    let before = children_cpu_seconds();
    let outcome = scenario::run_with(s, out, camera_keys);
    (outcome, children_cpu_seconds() - before)
}

/// CPU time of every waited-for child process so far. Scenarios run one at a time, so the
/// difference around one run is that replay's.
fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn incidents(o: &Outcome) -> String {
    format!(
        "{}/{} ({} false)",
        o.true_positives(),
        o.expected,
        o.false_positives()
    )
}

fn comparison_table(autos: &[Outcome], rows: &[Comparison]) -> String {
    let mut text = String::from(
        "| scenario | picture | stream min | auto: found/truth | auto inferences (per frame) | auto CPU-s per stream-min | full: found/truth | full inferences | full CPU-s per stream-min | CPU auto/full |\n|---|---|---:|---|---:|---:|---|---:|---:|---:|\n",
    );
    let (mut auto_found, mut full_found, mut truth) = (0, 0, 0);
    let (mut auto_cpu, mut full_cpu, mut minutes) = (0.0, 0.0, 0.0);
    for (auto, row) in autos.iter().zip(rows) {
        let summary = &auto.summary;
        let stream_minutes = summary["media_seconds"].as_f64().unwrap_or(0.0) / 60.0;
        let per_minute = |cpu: f64| {
            if stream_minutes > 0.0 {
                cpu / stream_minutes
            } else {
                0.0
            }
        };
        let inferences = summary["inferences"].as_u64().unwrap_or(0);
        let per_frame =
            inferences as f64 / summary["frames_detected"].as_u64().unwrap_or(0).max(1) as f64;
        text.push_str(&format!(
            "| {} | {}x{} | {:.1} | {} | {} ({:.1}) | {:.1} | {} | {} | {:.1} | {:.2} |\n",
            auto.scenario,
            summary["width"],
            summary["height"],
            stream_minutes,
            incidents(auto),
            inferences,
            per_frame,
            per_minute(row.auto_cpu),
            incidents(&row.full),
            row.full.summary["inferences"],
            per_minute(row.full_cpu),
            row.auto_cpu / row.full_cpu.max(1e-9),
        ));
        auto_found += auto.true_positives();
        full_found += row.full.true_positives();
        truth += auto.expected;
        auto_cpu += row.auto_cpu;
        full_cpu += row.full_cpu;
        minutes += stream_minutes;
    }
    text.push_str(&format!(
        "\nover the suite: auto finds {auto_found} of {truth} incidents, full {full_found}; \
         {minutes:.1} stream-minutes, auto {:.1} CPU-s per stream-minute, full {:.1} (ratio {:.2})\n",
        auto_cpu / minutes.max(1e-9),
        full_cpu / minutes.max(1e-9),
        auto_cpu / full_cpu.max(1e-9)
    ));
    text
}
