//! The scenario suite: clips derived from the shared media with the ffmpeg CLI (never
//! committed), a gridwatch config, and hand-written ground truth, one directory each under
//! `tests/scenarios/`. Running a scenario replays its clip and matches the incidents raised
//! against the expected ones.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{derive_once, ffmpeg, media, read_jsonl, replay_command, repo_root, run_ok};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(skip)]
    pub name: String,
    #[serde(skip)]
    pub dir: PathBuf,
    pub description: String,
    pub start_time: String,
    pub clip: ClipRecipe,
    #[serde(default)]
    pub expect: Vec<Expected>,
    /// Line crossings by hand, per line and direction (all classes); a scenario with a line
    /// and no entry for a direction expects none that way.
    #[serde(default)]
    pub crossings: Vec<ExpectedCrossings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedCrossings {
    pub line: String,
    pub direction: String,
    pub count: usize,
}

/// `ffmpeg [input_args] -i INPUT ... -filter_complex FILTER -map [v] [output_args] OUT.mp4`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipRecipe {
    pub inputs: Vec<String>,
    #[serde(default)]
    pub input_args: Vec<String>,
    pub filter: String,
    #[serde(default)]
    pub output_args: Vec<String>,
    /// The encoder: `libx264` unless given (`libx265` for an H.265 camera).
    #[serde(default)]
    pub codec: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub kind: String,
    pub zone: Option<String>,
    pub status: String,
    /// Seconds after the clip's first frame.
    pub opened_at: f64,
    /// Absent when the incident is still open at the end of the clip.
    pub closed_at: Option<f64>,
    pub tolerance: f64,
    pub signals: Vec<String>,
}

/// An incident as the replay raised it, from its events.
#[derive(Debug, Clone)]
pub struct Observed {
    pub incident_id: String,
    pub kind: String,
    pub zone: Option<String>,
    pub status: String,
    pub opened_at: f64,
    pub closed_at: Option<f64>,
    pub signals: Vec<String>,
}

pub struct Outcome {
    pub scenario: String,
    pub expected: usize,
    pub observed: Vec<Observed>,
    /// (expected index, observed index) pairs.
    pub matched: Vec<(usize, usize)>,
    /// Every incident event, schema-checked by the caller.
    pub events: Vec<Value>,
    /// Every `detections` record of the replay, in frame order.
    pub detections: Vec<Value>,
    /// Every `crossing` record (line crossings), in time order.
    pub crossings: Vec<Value>,
    pub problems: Vec<String>,
    /// The replay's summary (frames decoded, detected, gated, ...).
    pub summary: Value,
    /// What the replay logged on stderr.
    pub log: String,
}

impl Outcome {
    pub fn true_positives(&self) -> usize {
        self.matched.len()
    }
    pub fn false_positives(&self) -> usize {
        self.observed.len() - self.matched.len()
    }
    pub fn false_negatives(&self) -> usize {
        self.expected - self.matched.len()
    }
}

pub fn scenarios_dir() -> PathBuf {
    repo_root().join("tests/scenarios")
}

pub fn load(name: &str) -> Scenario {
    let dir = scenarios_dir().join(name);
    let text = std::fs::read_to_string(dir.join("scenario.toml"))
        .unwrap_or_else(|e| panic!("reading scenario {name}: {e}"));
    let mut scenario: Scenario =
        toml::from_str(&text).unwrap_or_else(|e| panic!("scenario {name}: {e}"));
    scenario.name = name.to_string();
    scenario.dir = dir;
    scenario
}

pub fn all_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(scenarios_dir())
        .expect("tests/scenarios exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("scenario.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Builds (or reuses) the scenario's clip under `target/scenario-clips/`, keyed by a hash of
/// the recipe, so repeated test runs do not re-encode.
pub fn clip(scenario: &Scenario) -> PathBuf {
    let recipe = &scenario.clip;
    let mut hasher = Sha256::new();
    hasher.update(format!(
        "{:?}{:?}{}{:?}{:?}",
        recipe.inputs, recipe.input_args, recipe.filter, recipe.output_args, recipe.codec
    ));
    let key = hex(&hasher.finalize()[..8]);
    let dir = repo_root().join("target/scenario-clips");
    std::fs::create_dir_all(&dir).expect("create target/scenario-clips");
    let out = dir.join(format!("{}-{key}.mp4", scenario.name));
    derive_once(&out, |partial| {
        let mut args: Vec<String> = Vec::new();
        for input in &recipe.inputs {
            args.extend(recipe.input_args.iter().cloned());
            args.push("-i".into());
            args.push(media(input).to_string_lossy().into_owned());
        }
        args.extend([
            "-filter_complex".into(),
            recipe.filter.clone(),
            "-map".into(),
            "[v]".into(),
        ]);
        args.extend(recipe.output_args.iter().cloned());
        let codec = recipe.codec.as_deref().unwrap_or("libx264");
        args.extend(["-an".into(), "-c:v".into(), codec.to_string()]);
        if codec == "libx265" {
            args.extend(["-x265-params".into(), "log-level=error".into()]);
        }
        args.extend(["-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p"].map(String::from));
        args.push(partial.to_string_lossy().into_owned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ffmpeg(&refs);
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn seconds_between(from: &str, to: &str) -> f64 {
    let parse = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .unwrap_or_else(|e| panic!("bad time {t}: {e}"))
            .timestamp_micros()
    };
    (parse(to) - parse(from)) as f64 / 1e6
}

/// The scenario's config written to `dir`, with `[storage]` there and `extra` tables added
/// before its cameras.
pub fn config_in(dir: &Path, scenario_name: &str, extra: &str) -> PathBuf {
    config_with_camera_keys_in(dir, scenario_name, extra, "")
}

/// Camera keys for the tests of storage, delivery, review and actions, which need a
/// scenario's incidents, not its detection: the detector sees the whole picture once per
/// frame, even where the automatic plan adds tiles (three inferences a frame for the
/// elevator). The scenario suite (tests/tests/e2e/scenarios.rs) keeps the plan and covers
/// the tiles. Only for scenarios whose plan begins with the whole picture: a zone crop
/// (line_cyclist) would become a different detection.
pub const WHOLE_PICTURE: &str = "regions = \"full\"\n";

/// [`config_in`] with [`WHOLE_PICTURE`] on the scenario's camera.
pub fn config_whole_picture_in(dir: &Path, scenario_name: &str, extra: &str) -> PathBuf {
    config_with_camera_keys_in(dir, scenario_name, extra, WHOLE_PICTURE)
}

/// [`config_in`] with `camera_keys` (TOML) added to the scenario's camera.
pub fn config_with_camera_keys_in(
    dir: &Path,
    scenario_name: &str,
    extra: &str,
    camera_keys: &str,
) -> PathBuf {
    let base = std::fs::read_to_string(scenarios_dir().join(scenario_name).join("config.toml"))
        .expect("scenario config");
    let base = with_camera_keys(&base, camera_keys);
    let at = base.find("[[cameras]]").expect("the scenario has cameras");
    let text = format!(
        "{}[storage]\ndata_dir = \"data\"\n\n{extra}\n\n{}",
        &base[..at],
        &base[at..]
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write the config");
    path
}

/// A scenario's config text with `camera_keys` (TOML) added to its one camera, right after
/// the camera's header, where no other table's keys can be (an action's `url`, say).
fn with_camera_keys(config: &str, camera_keys: &str) -> String {
    if camera_keys.is_empty() {
        return config.to_string();
    }
    let keys = camera_keys.trim_end();
    config.replacen("[[cameras]]\n", &format!("[[cameras]]\n{keys}\n"), 1)
}

/// Replays the scenario and compares its incidents with the ground truth.
pub fn run(scenario: &Scenario, out_dir: &Path) -> Outcome {
    run_with(scenario, out_dir, "")
}

/// As [`run`], with `camera_keys` (TOML) added to the scenario's camera, e.g. motion gating.
pub fn run_with(scenario: &Scenario, out_dir: &Path, camera_keys: &str) -> Outcome {
    let mut config = scenario.dir.join("config.toml");
    if !camera_keys.is_empty() {
        let text = std::fs::read_to_string(&config).expect("scenario config");
        config = out_dir.join(format!("{}-variant.toml", scenario.name));
        std::fs::write(&config, with_camera_keys(&text, camera_keys))
            .expect("write the variant config");
    }
    run_on(scenario, out_dir, &config, &crate::gridwatch_bin())
}

/// Replays the scenario with `config` through `program` (a gridwatch binary, or a wrapper
/// that runs another architecture's build under qemu) and matches its incidents.
pub fn run_on(scenario: &Scenario, out_dir: &Path, config: &Path, program: &Path) -> Outcome {
    let clip = clip(scenario);
    let out = out_dir.join(format!("{}.jsonl", scenario.name));
    let mut command = replay_command(
        config,
        &clip,
        &out,
        &["--start-time", &scenario.start_time, "--summary-json"],
    );
    let mut command = crate::with_program(&mut command, program);
    let replay = run_ok(&mut command);
    let summary: Value = replay
        .stderr()
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    let records = read_jsonl(&out);
    let crossings: Vec<Value> = records
        .iter()
        .filter(|r| r["type"] == "crossing")
        .cloned()
        .collect();
    let (events, detections): (Vec<Value>, Vec<Value>) = records
        .into_iter()
        .filter(|r| r["type"] == "incident" || r["type"] == "detections")
        .partition(|r| r["type"] == "incident");

    let mut observed: Vec<Observed> = Vec::new();
    for e in &events {
        let id = e["incident_id"].as_str().unwrap_or_default().to_string();
        let at = seconds_between(
            &scenario.start_time,
            e["event_at"].as_str().unwrap_or_default(),
        );
        match e["state"].as_str() {
            Some("opened") => observed.push(Observed {
                incident_id: id,
                kind: e["kind"].as_str().unwrap_or_default().into(),
                zone: e["zone"]["id"].as_str().map(String::from),
                status: e["status"].as_str().unwrap_or_default().into(),
                opened_at: at,
                closed_at: None,
                signals: e["evidence"]["signals"]
                    .as_array()
                    .map(|s| {
                        s.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some("closed") => {
                if let Some(o) = observed.iter_mut().find(|o| o.incident_id == id) {
                    o.closed_at = Some(at);
                }
            }
            _ => {}
        }
    }

    let mut matched = Vec::new();
    let mut problems = Vec::new();
    for (ei, exp) in scenario.expect.iter().enumerate() {
        let candidate = observed.iter().enumerate().find(|(oi, o)| {
            !matched.iter().any(|(_, m)| m == oi)
                && o.kind == exp.kind
                && o.zone == exp.zone
                && (o.opened_at - exp.opened_at).abs() <= exp.tolerance
                && match (exp.closed_at, o.closed_at) {
                    (None, None) => true,
                    (Some(e), Some(c)) => (c - e).abs() <= exp.tolerance,
                    _ => false,
                }
        });
        match candidate {
            Some((oi, o)) => {
                matched.push((ei, oi));
                if o.status != exp.status {
                    problems.push(format!(
                        "{}: status {} (expected {})",
                        exp.kind, o.status, exp.status
                    ));
                }
                if o.signals != exp.signals {
                    problems.push(format!(
                        "{}: signals {:?} (expected {:?})",
                        exp.kind, o.signals, exp.signals
                    ));
                }
            }
            None => problems.push(format!("missed: {exp:?}")),
        }
    }
    for (oi, o) in observed.iter().enumerate() {
        if !matched.iter().any(|(_, m)| *m == oi) {
            problems.push(format!("unexpected: {o:?}"));
        }
    }
    let mut seen: Vec<(String, String)> = crossings
        .iter()
        .map(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (field("line"), field("direction"))
        })
        .collect();
    for exp in &scenario.crossings {
        let count = seen
            .iter()
            .filter(|(line, dir)| *line == exp.line && *dir == exp.direction)
            .count();
        if count != exp.count {
            problems.push(format!(
                "crossings of {} {}: {count} (expected {})",
                exp.line, exp.direction, exp.count
            ));
        }
        seen.retain(|(line, dir)| !(*line == exp.line && *dir == exp.direction));
    }
    if !seen.is_empty() {
        problems.push(format!("unexpected crossings: {seen:?}"));
    }
    Outcome {
        scenario: scenario.name.clone(),
        expected: scenario.expect.len(),
        observed,
        matched,
        events,
        detections,
        crossings,
        problems,
        summary,
        log: replay.stderr(),
    }
}

/// Precision and recall of incidents over outcomes, as a table.
pub fn report(outcomes: &[Outcome]) -> String {
    let mut text = String::from(
        "| scenario | expected | raised | true pos. | false pos. | missed |\n|---|---|---|---|---|---|\n",
    );
    let (mut tp, mut fp, mut fneg) = (0, 0, 0);
    for o in outcomes {
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            o.scenario,
            o.expected,
            o.observed.len(),
            o.true_positives(),
            o.false_positives(),
            o.false_negatives()
        ));
        tp += o.true_positives();
        fp += o.false_positives();
        fneg += o.false_negatives();
    }
    let precision = if tp + fp == 0 {
        1.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    let recall = if tp + fneg == 0 {
        1.0
    } else {
        tp as f64 / (tp + fneg) as f64
    };
    text.push_str(&format!(
        "\nincidents over the suite: precision {precision:.2} ({tp} of {} raised), recall {recall:.2} ({tp} of {} expected)\n",
        tp + fp,
        tp + fneg
    ));
    text
}
