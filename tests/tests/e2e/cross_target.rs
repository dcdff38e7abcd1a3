//! The cross-compiled build, run under qemu-user, against the native build: the same
//! detections and the same incidents. `cross/test.sh TARGET` runs these with the target's
//! binary (GRIDWATCH_CROSS_TARGET, GRIDWATCH_CROSS_BIN); they are ignored in the plain test
//! run, which has no target build.
//!
//! Emulation costs seconds per inference (about 3 s for YOLOX-Nano on 2 threads here), so
//! the scenario replays run at a lower detection rate than the suite's own configs,
//! GRIDWATCH_CROSS_DETECT_FPS (default 0.5), on both builds alike: what is compared is the
//! two builds, frame for frame, not the ground truth. GRIDWATCH_CROSS_SCENARIOS picks the
//! scenarios (comma-separated, or `all`).

use std::path::{Path, PathBuf};

use gridwatch_e2e::scenario::{self, Observed, Outcome};
use gridwatch_e2e::*;
use serde_json::Value;

struct Target {
    name: String,
    /// A script that runs the target's gridwatch under qemu with the given arguments.
    program: PathBuf,
    backend: &'static str,
    _dir: tempfile::TempDir,
}

fn target() -> Target {
    let name = std::env::var("GRIDWATCH_CROSS_TARGET")
        .expect("GRIDWATCH_CROSS_TARGET: run these through cross/test.sh TARGET");
    let bin = std::env::var("GRIDWATCH_CROSS_BIN")
        .expect("GRIDWATCH_CROSS_BIN: run these through cross/test.sh TARGET");
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("gridwatch-under-qemu");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\nexec '{}' '{name}' '{bin}' \"$@\"\n",
            repo_root().join("cross/run-target.sh").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The targets' inference engines: ONNX Runtime where a wheel exists, tract on armv7.
    let backend = if name == "armv7" { "tract" } else { "ort" };
    Target {
        name,
        program,
        backend,
        _dir: dir,
    }
}

fn detect(program: &Path, backend: &str) -> Value {
    let mut command = gridwatch();
    command
        .arg("detect")
        .arg(media("dog.jpg"))
        .args(["--backend", backend]);
    let run = run_ok(&mut with_program(&mut command, program));
    serde_json::from_str(&run.stdout()).expect("detect prints JSON")
}

#[test]
#[ignore = "needs a cross build: cross/test.sh TARGET runs it"]
fn target_build_detects_what_the_native_build_detects() {
    let target = target();
    let ours = detect(&target.program, target.backend);
    let native = detect(&gridwatch_bin(), target.backend);
    let ours = detections_of(&ours["detections"]);
    assert!(ours.len() >= 3, "dog, bicycle and car: {ours:?}");
    compare_detections(
        &format!("{} vs x86_64 ({})", target.name, target.backend),
        &detections_of(&native["detections"]),
        &ours,
    )
    .unwrap();
}

/// The scenario's config (scenario::config_in, with `extra` tables) with its camera's
/// detection rate set to `fps`.
fn at_rate(scenario: &str, fps: f64, extra: &str, dir: &Path) -> PathBuf {
    let path = scenario::config_in(dir, scenario, extra);
    let text = std::fs::read_to_string(&path).unwrap();
    let without: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("detect_fps"))
        .collect();
    let text = without
        .join("\n")
        .replacen("\nurl = ", &format!("\ndetect_fps = {fps}\nurl = "), 1);
    std::fs::write(&path, text).unwrap();
    path
}

fn same_incidents(a: &Observed, b: &Observed, slack: f64) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= slack;
    a.kind == b.kind
        && a.zone == b.zone
        && a.status == b.status
        && a.signals == b.signals
        && close(a.opened_at, b.opened_at)
        && match (a.closed_at, b.closed_at) {
            (None, None) => true,
            (Some(x), Some(y)) => close(x, y),
            _ => false,
        }
}

#[test]
#[ignore = "needs a cross build: cross/test.sh TARGET runs it"]
fn target_build_replays_scenarios_with_the_native_incidents() {
    let target = target();
    let fps: f64 = std::env::var("GRIDWATCH_CROSS_DETECT_FPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.5);
    let names = match std::env::var("GRIDWATCH_CROSS_SCENARIOS").as_deref() {
        Ok("all") => scenario::all_names(),
        Ok(list) if !list.is_empty() => list.split(',').map(str::to_string).collect(),
        _ => vec!["camera_offline".to_string()],
    };
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut incidents = 0;
    println!(
        "| scenario | detect fps | frames detected ({}) | incidents x86_64 | incidents {} | same |",
        target.name, target.name
    );
    println!("|---|---|---|---|---|---|");
    for name in &names {
        let s = scenario::load(name);
        let backend = format!(
            "[detector]\nbackend = \"{}\"\nthreads = 2\n",
            target.backend
        );
        let config = at_rate(name, fps, &backend, dir.path());
        let run = |program: &Path, label: &str| -> Outcome {
            let out = dir.path().join(label);
            std::fs::create_dir_all(&out).unwrap();
            scenario::run_on(&s, &out, &config, program)
        };
        let native = run(&gridwatch_bin(), "native");
        let ours = run(&target.program, &target.name);
        let same = native.observed.len() == ours.observed.len()
            && native
                .observed
                .iter()
                .zip(&ours.observed)
                .all(|(a, b)| same_incidents(a, b, 1.0 / fps + 0.01))
            && native.summary["frames_detected"] == ours.summary["frames_detected"];
        println!(
            "| {name} | {fps} | {} | {} | {} | {} |",
            ours.summary["frames_detected"],
            native.observed.len(),
            ours.observed.len(),
            if same { "yes" } else { "NO" }
        );
        if !same {
            failures.push(format!(
                "{name}: x86_64 {:#?}\n{}: {:#?}\nsummaries: {} / {}",
                native.observed, target.name, ours.observed, native.summary, ours.summary
            ));
        }
        incidents += ours.observed.len();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        incidents > 0,
        "the chosen scenarios raise incidents to compare: {names:?}"
    );
}
