//! `gridwatch detect` and `gridwatch replay` on the real sample media with the real model.

use std::path::Path;

use gridwatch_e2e::*;
use serde_json::Value;

fn replay_to(config: &Path, input: &Path, out: &Path, extra: &[&str]) -> Run {
    run_ok(&mut replay_command(config, input, out, extra))
}

fn best(detections: &[Value], label: &str) -> Option<(f64, Vec<f64>)> {
    detections
        .iter()
        .filter(|d| d["label"] == label)
        .map(|d| (d["score"].as_f64().unwrap(), json_box(&d["box"])))
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

#[test]
fn detect_finds_the_dog_the_bicycle_and_the_truck_as_car() {
    let dir = tempfile::tempdir().unwrap();
    let annotated = dir.path().join("dog-annotated.png");
    let r = run_ok(
        gridwatch()
            .arg("detect")
            .arg(media("dog.jpg"))
            .arg("--annotate")
            .arg(&annotated),
    );
    let report: Value = serde_json::from_str(&r.stdout()).unwrap();
    assert_eq!(report["width"], 768);
    assert_eq!(report["height"], 576);
    let detections = report["detections"].as_array().unwrap();
    // Boxes drawn by hand around the objects of YOLOX's demo image.
    for (label, expected) in [
        ("dog", [130.0, 210.0, 325.0, 542.0]),
        ("bicycle", [55.0, 130.0, 570.0, 430.0]),
        ("car", [465.0, 78.0, 692.0, 172.0]),
    ] {
        let (score, bbox) = best(detections, label).unwrap_or_else(|| panic!("no {label}"));
        assert!(score > 0.7, "{label} score {score}");
        assert!(iou(&bbox, &expected) > 0.9, "{label} box {bbox:?}");
    }
    for d in detections {
        let n = json_box(&d["box_norm"]);
        assert!(
            n.iter().all(|v| (0.0..=1.0).contains(v)),
            "normalised box {n:?}"
        );
    }

    // The annotated copy has the dog's box outline drawn in its class colour.
    let img = image::open(&annotated).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (768, 576));
    let (_, dog) = best(detections, "dog").unwrap();
    let colour = gridwatch::annotate::class_colour(16);
    let left_edge = img.get_pixel(dog[0].round() as u32, ((dog[1] + dog[3]) / 2.0) as u32);
    assert_eq!(*left_edge, colour, "box outline on the dog's left edge");
    let original = image::open(media("dog.jpg")).unwrap().to_rgb8();
    let centre = ((dog[0] + dog[2]) / 2.0) as u32;
    let middle = ((dog[1] + dog[3]) / 2.0) as u32;
    let diff = |a: u8, b: u8| (i16::from(a) - i16::from(b)).abs();
    let (p, q) = (
        img.get_pixel(centre, middle),
        original.get_pixel(centre, middle),
    );
    assert!(
        (0..3).all(|c| diff(p[c], q[c]) < 12),
        "inside of the box left as it was: {p:?} vs {q:?}"
    );
}

#[test]
fn replay_finds_the_persons_when_they_are_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = dir.path().join("persons.jsonl");
    let r = replay_to(
        &config,
        &media("one-by-one-person-detection.mp4"),
        &out,
        &["--start-time", "2026-11-24T10:00:00+08:00"],
    );
    assert!(
        r.stderr().contains("person"),
        "summary names persons: {}",
        r.stderr()
    );
    let frames = read_jsonl(&out);
    assert_eq!(frames.len(), 697, "139.4 s at 5 detect fps");
    let person_at = |from: f64, to: f64| -> (usize, usize) {
        let window: Vec<&Value> = frames
            .iter()
            .filter(|f| (from..to).contains(&f["pts"].as_f64().unwrap()))
            .collect();
        let with = window
            .iter()
            .filter(|f| {
                f["detections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|d| d["label"] == "person" && d["score"].as_f64().unwrap() >= 0.5)
            })
            .count();
        (with, window.len())
    };
    // ../shared/README.md: one person at a time, present roughly 8-18, 24-46, 52-70, 76-86,
    // 96-118 and 124-134 s. Inside each stay (a second or two in from the edges) the person
    // must be found in nearly every frame; in the gaps between stays, in none.
    for (from, to) in [
        (10.0, 17.0),
        (26.0, 43.0),
        (53.0, 69.0),
        (77.0, 85.0),
        (97.0, 117.0),
        (125.0, 133.0),
    ] {
        let (with, total) = person_at(from, to);
        assert!(
            with * 10 >= total * 9,
            "{from}-{to} s: person in {with} of {total} frames"
        );
    }
    for (from, to) in [
        (0.0, 5.0),
        (20.0, 22.0),
        (46.0, 49.0),
        (71.0, 73.0),
        (88.0, 92.0),
        (120.0, 122.0),
        (137.0, 140.0),
    ] {
        let (with, total) = person_at(from, to);
        assert_eq!(
            with, 0,
            "{from}-{to} s: nobody there, yet a person in {with} of {total} frames"
        );
    }
}

#[test]
fn replay_samples_by_presentation_time_and_keys_times_to_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[cameras]]\nid = \"lot\"\nurl = \"unused\"\ndetect_fps = 5\n",
    );
    let out = dir.path().join("car.jsonl");
    replay_to(
        &config,
        &media("car-detection.mp4"),
        &out,
        &["--start-time", "2026-11-24T22:00:00+08:00"],
    );
    let frames = read_jsonl(&out);
    // 377 frames at 12.5 fps = 30.2 s; 5 detect fps takes the first frame at or after each
    // 0.2 s mark: 151 frames, 0.16 or 0.24 s apart.
    assert_eq!(frames.len(), 151);
    let pts: Vec<f64> = frames.iter().map(|f| f["pts"].as_f64().unwrap()).collect();
    for pair in pts.windows(2) {
        let gap = ((pair[1] - pair[0]) * 1000.0).round();
        assert!(
            gap == 160.0 || gap == 240.0,
            "gap {gap} ms between {pair:?}"
        );
    }
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f["type"], "detections");
        assert_eq!(f["camera"], "lot");
        assert_eq!(f["seq"], i as u64);
        assert_eq!(f["width"], 768);
    }
    assert_eq!(frames[0]["at"], "2026-11-24T22:00:00.000+08:00");
    assert_eq!(frames[1]["pts"], 0.24);
    assert_eq!(frames[1]["at"], "2026-11-24T22:00:00.240+08:00");
    assert_eq!(frames[150]["at"], "2026-11-24T22:00:30.000+08:00");
    assert_eq!(frames[0]["keyframe"], true);
}

#[test]
fn replay_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let start = ["--start-time", "2026-01-01T00:00:00Z"];
    replay_to(&config, &media("car-detection.mp4"), &a, &start);
    replay_to(&config, &media("car-detection.mp4"), &b, &start);
    let (a, b) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(!a.is_empty());
    assert!(a == b, "two replays of the same input differ");
}

#[test]
fn replay_reads_a_gif_and_finds_the_car_once_it_is_in_the_aisle() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let out = dir.path().join("gif.jsonl");
    replay_to(
        &config,
        &media("person-bicycle-car-detection.gif"),
        &out,
        &["--detect-fps", "60"],
    );
    let frames = read_jsonl(&out);
    assert_eq!(frames.len(), 41);
    let car_score =
        |f: &Value| best(f["detections"].as_array().unwrap(), "car").map_or(0.0, |b| b.0);
    // ../shared/README.md: the car is found as `car` (0.4-0.8) from about frame 24.
    let late: Vec<f64> = frames[30..].iter().map(car_score).collect();
    assert!(
        late.iter().all(|s| *s >= 0.5),
        "car in every late frame: {late:?}"
    );
    let early: Vec<f64> = frames[..20].iter().map(car_score).collect();
    assert!(
        early.iter().all(|s| *s < 0.4),
        "at most a faint car before it arrives: {early:?}"
    );
}

#[test]
fn replay_writes_json_lines_to_stdout_without_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let r = run_ok(
        gridwatch()
            .arg("replay")
            .arg("--config")
            .arg(&config)
            .arg("--input")
            .arg(media("person-bicycle-car-detection.gif"))
            .args(["--no-progress", "--summary-json"]),
    );
    let lines: Vec<Value> = r
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 17, "3.4 s at 5 fps");
    let summary: Value = serde_json::from_str(r.stderr().trim().lines().last().unwrap()).unwrap();
    assert_eq!(summary["frames_detected"], 17);
    assert_eq!(summary["frames_decoded"], 41);
    assert!(summary["labels"]["car"]["frames"].as_u64().unwrap() >= 4);
}

#[test]
fn check_summarises_a_valid_config() {
    let r = run_ok(
        gridwatch()
            .arg("check")
            .arg("--config")
            .arg(repo_root().join("agent/config.example.toml")),
    );
    let out = r.stdout();
    assert!(out.contains("config "), "{out}");
    assert!(out.contains("yolox_nano"), "{out}");
    assert!(out.contains("verified"), "{out}");
    assert!(out.contains("ONNX Runtime 1.32"), "{out}");
    assert!(
        out.contains("rtsp://***@192.168.1.64"),
        "credentials redacted: {out}"
    );
    assert!(!out.contains("password"), "credentials redacted: {out}");
}

#[test]
fn check_probes_camera_streams() {
    let dir = tempfile::tempdir().unwrap();
    let clip = media("car-detection.mp4");
    let config = write_config(
        dir.path(),
        &format!(
            "[[cameras]]\nid = \"good\"\nurl = \"{}\"\n\n[[cameras]]\nid = \"gone\"\nurl = \"/nonexistent.mp4\"\n",
            clip.display()
        ),
    );
    let r = run(gridwatch()
        .arg("check")
        .arg("--probe-cameras")
        .arg("--config")
        .arg(&config));
    assert_eq!(r.code(), 4, "{}", r.stderr());
    assert!(
        r.stdout().contains("stream ok: h264 768x432"),
        "{}",
        r.stdout()
    );
    assert!(r.stdout().contains("stream FAILED"), "{}", r.stdout());
}

/// `seconds` of a shared still image at 5 fps through the filter `vf`, as H.264 with a
/// keyframe every 10 frames, at `path`.
fn still_clip(path: &Path, image: &str, seconds: u32, vf: &str) -> std::path::PathBuf {
    ffmpeg(&[
        "-loop",
        "1",
        "-framerate",
        "5",
        "-t",
        &seconds.to_string(),
        "-i",
        media(image).to_str().unwrap(),
        "-vf",
        &format!("{vf},format=yuv420p"),
        "-c:v",
        "libx264",
        "-g",
        "10",
        path.to_str().unwrap(),
    ]);
    path.to_path_buf()
}

#[test]
fn check_prints_the_regions_and_which_stream_they_read() {
    // A 1080p main stream and a 640x360 sub-stream of the same scene (dog.jpg small in a
    // wide grey picture); the porch zone's objects (8 % of the picture) are 29 px on the
    // sub-stream even at native resolution, so detection reads the main stream.
    let dir = tempfile::tempdir().unwrap();
    let clip = |name: &str, size: &str| {
        let vf = format!("scale=384:288,pad=1920:1080:1200:600:color=gray,scale={size}");
        still_clip(&dir.path().join(name), "dog.jpg", 1, &vf)
    };
    let main = clip("main.mp4", "1920:1080");
    let sub = clip("sub.mp4", "640:360");
    let zone = "[[cameras.zones]]\nid = \"porch\"\npolygon = [[0.665, 0.702], [0.795, 0.702], [0.795, 0.809], [0.665, 0.809]]\n";
    let config = write_config(
        dir.path(),
        &format!(
            "[[cameras]]\nid = \"wide\"\nurl = \"{}\"\ndetect_url = \"{}\"\ndetect_fps = 2\n\n{zone}\n[[cameras]]\nid = \"whole\"\nurl = \"{}\"\nregions = \"full\"\n\n{zone}",
            main.display(),
            sub.display(),
            main.display()
        ),
    );
    let r = run_ok(
        gridwatch()
            .args(["check", "--probe-cameras", "--config"])
            .arg(&config),
    );
    let out = r.stdout();
    assert!(out.contains("stream ok: h264 640x360"), "{out}");
    assert!(
        out.contains("regions   read the main stream: the sub-stream is short of pixels: on 640x360 zone porch's smallest objects are 29 px"),
        "{out}"
    );
    assert!(
        out.contains(
            "r0 zones porch: 416x416 px at (1192, 580), scale 1.00, smallest object 86 px"
        ),
        "{out}"
    );
    assert!(
        out.contains("1 region(s) on 1920x1080: 2.0 inferences per second at detect_fps 2"),
        "{out}"
    );
    // regions = "full": the whole picture, and the plan says its objects are too small.
    assert!(
        out.contains("read the main stream: the camera has no sub-stream"),
        "{out}"
    );
    assert!(
        out.contains(
            "r0 the whole picture: 1920x1080 px at (0, 0), scale 0.22, smallest object 19 px"
        ),
        "{out}"
    );
}

#[test]
fn help_explains_commands_and_exit_codes() {
    let r = run_ok(gridwatch().arg("--help"));
    let help = r.stdout();
    for needle in [
        "detect",
        "replay",
        "check",
        "models",
        "Exit codes",
        "GRIDWATCH_MODEL_DIR",
    ] {
        assert!(help.contains(needle), "`{needle}` missing from --help");
    }
    let r = run_ok(gridwatch().args(["replay", "--help"]));
    assert!(r.stdout().contains("--start-time"));
}

#[test]
fn runs_without_a_writable_home() {
    // A daemon user may have no home directory; ONNX Runtime must not need one.
    let r = run_ok(
        gridwatch()
            .arg("detect")
            .arg(media("dog.jpg"))
            .env("HOME", "/nonexistent/home")
            .env_remove("XDG_CACHE_HOME"),
    );
    assert!(r.stdout().contains("\"dog\""));
}

#[test]
fn replay_survives_a_resolution_change_mid_stream_and_boxes_stay_put() {
    // A camera reconfigured from its web page switches resolution (here also its aspect
    // ratio) without a reconnect: the H.264 stream carries the new SPS in band. The scene
    // is the same still picture throughout, so in normalised coordinates every box must
    // stay where it was.
    let dir = tempfile::tempdir().unwrap();
    let part = |name: &str, size: &str| {
        still_clip(
            &dir.path().join(name),
            "dog.jpg",
            4,
            &format!("scale={size}"),
        )
    };
    let first = part("first.ts", "768:576");
    let second = part("second.ts", "640:360");
    let list = dir.path().join("parts.txt");
    std::fs::write(
        &list,
        format!("file '{}'\nfile '{}'\n", first.display(), second.display()),
    )
    .unwrap();
    let joined = dir.path().join("joined.ts");
    ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        list.to_str().unwrap(),
        "-c",
        "copy",
        joined.to_str().unwrap(),
    ]);
    let config = write_config(
        dir.path(),
        "[[cameras]]\nid = \"porch\"\nurl = \"unused\"\ndetect_fps = 5\n",
    );
    let out = dir.path().join("out.jsonl");
    let run = replay_to(
        &config,
        &joined,
        &out,
        &["--summary-json", "--log-level", "info"],
    );
    assert!(
        run.stderr().contains("stream changed resolution url="),
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr().contains("from=768x576 to=640x360"),
        "{}",
        run.stderr()
    );
    let summary: Value = run
        .stderr()
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap();
    assert_eq!(summary["decode_errors"], 0, "{summary}");
    let frames = read_jsonl(&out);
    assert!(frames.len() >= 38, "{} frames", frames.len());
    let sizes: Vec<(u64, u64)> = frames
        .iter()
        .map(|f| (f["width"].as_u64().unwrap(), f["height"].as_u64().unwrap()))
        .collect();
    let switch = sizes.iter().position(|s| *s == (640, 360)).unwrap();
    assert!(
        sizes[..switch].iter().all(|s| *s == (768, 576))
            && sizes[switch..].iter().all(|s| *s == (640, 360))
            && switch >= 15,
        "{sizes:?}"
    );
    // Detections are in the frame's pixels; normalise to compare across sizes.
    let dog_at = |f: &Value| {
        let (w, h) = (f["width"].as_f64().unwrap(), f["height"].as_f64().unwrap());
        let b = best(f["detections"].as_array().unwrap(), "dog")
            .unwrap_or_else(|| panic!("no dog at {}", f["pts"]))
            .1;
        vec![b[0] / w, b[1] / h, b[2] / w, b[3] / h]
    };
    let reference = dog_at(&frames[0]);
    for f in &frames {
        let overlap = iou(&dog_at(f), &reference);
        assert!(
            overlap > 0.9,
            "dog box moved at {}: IoU {overlap}",
            f["pts"]
        );
    }
}

#[test]
fn bench_measures_decode_inference_and_the_pipeline() {
    let run = run_ok(gridwatch().args([
        "bench",
        "--input",
        media("person-bicycle-car-detection.gif").to_str().unwrap(),
        "--repeat",
        "2",
        "--inferences",
        "5",
        "--json",
    ]));
    let report: Value = serde_json::from_str(run.stdout().trim()).unwrap();
    assert_eq!(report["frames"], 41);
    assert_eq!(report["ffmpeg_cli_decode"].as_array().unwrap().len(), 2);
    for key in ["ffmpeg_cli_decode", "decode_only", "replay"] {
        for sample in report[key].as_array().unwrap() {
            assert!(sample["cpu"].as_f64().unwrap() > 0.0, "{key}: {report}");
            assert!(sample["wall"].as_f64().unwrap() > 0.0, "{key}: {report}");
        }
    }
    let one_thread = &report["inference"][0];
    assert_eq!(one_thread["threads"], 1);
    assert!(one_thread["median_ms"].as_f64().unwrap() > 0.0);
    assert!(one_thread["p95_ms"].as_f64().unwrap() >= one_thread["median_ms"].as_f64().unwrap());
    // 3.4 s at 5 detect fps.
    let inferred = report["replay_inferred"].as_u64().unwrap();
    assert!((16..=18).contains(&inferred), "{inferred}");
    // Without --json: the tables, with the ratio against the limits.
    let tables = run_ok(gridwatch().args([
        "bench",
        "--input",
        media("person-bicycle-car-detection.gif").to_str().unwrap(),
        "--repeat",
        "1",
        "--inferences",
        "5",
    ]));
    assert!(
        tables.stdout().contains("| gridwatch decode only"),
        "{}",
        tables.stdout()
    );
    assert!(
        tables
            .stdout()
            .contains("full pipeline CPU / (decode-only CPU")
    );
}

/// Runs a command to completion; its peak RSS in KiB, from wait4 (which reaps the child:
/// `Child::wait` would lose its resource usage).
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(cmd: &mut std::process::Command) -> i64 {
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: wait4 fills the zeroed rusage for our own child.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::wait4(pid, &mut status, 0, &mut usage), pid);
        usage
    };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    usage.ru_maxrss
}

#[test]
fn memory_does_not_grow_with_the_length_of_the_stream() {
    // The soak found 12 KB leaked per packet read; a daemon runs for months. The same still
    // picture for 2 and for 20 minutes must peak at the same memory.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[cameras]]\nid = \"porch\"\nurl = \"unused\"\ndetect_fps = 0.2\n",
    );
    let peak = |seconds: u32| {
        let clip = gridwatch_e2e::rtsp::still_clip(seconds);
        peak_rss_kib(&mut replay_command(
            &config,
            &clip,
            &dir.path().join("out.jsonl"),
            &[],
        ))
    };
    let short = peak(120);
    let long = peak(1200);
    // 5400 more packets of ~11 KB: a per-packet leak would add about 60 MiB.
    assert!(
        long - short < 12 * 1024,
        "peak RSS {short} KiB for 2 min, {long} KiB for 20 min"
    );
}

#[test]
fn snapshot_writes_the_camera_picture_with_its_zones_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let main = still_clip(&dir.path().join("main.mp4"), "dog.jpg", 1, "scale=640:480");
    let zone = "[[cameras.zones]]\nid = \"porch\"\npolygon = [[0.1, 0.5], [0.9, 0.5], [0.9, 0.95], [0.1, 0.95]]\n";
    let config = write_config(
        dir.path(),
        &format!(
            "[[cameras]]\nid = \"door\"\nurl = \"{}\"\n\n{zone}\n[[cameras]]\nid = \"gone\"\nurl = \"{}\"\n",
            main.display(),
            dir.path().join("no-such-file.mp4").display()
        ),
    );
    let plain = dir.path().join("plain.jpg");
    let drawn = dir.path().join("zones.jpg");
    let r = run_ok(
        gridwatch()
            .arg("snapshot")
            .arg("--config")
            .arg(&config)
            .arg("door")
            .arg("-o")
            .arg(&plain),
    );
    assert!(r.stdout().contains("640x480"), "{}", r.stdout());
    run_ok(
        gridwatch()
            .arg("snapshot")
            .arg("--config")
            .arg(&config)
            .arg("door")
            .arg("-o")
            .arg(&drawn)
            .arg("--zones"),
    );
    let plain = image::open(&plain).unwrap().to_rgb8();
    let drawn = image::open(&drawn).unwrap().to_rgb8();
    assert_eq!(plain.dimensions(), (640, 480));
    // The zone's top edge (y = 0.5) is drawn in yellow; the plain picture has the scene.
    let yellow = |img: &image::RgbImage, x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        p[0] > 200 && p[1] > 180 && p[2] < 90
    };
    assert!(yellow(&drawn, 320, 240) && !yellow(&plain, 320, 240));
    // The detection region detection plans for it (the whole 640x480 picture) is outlined
    // in cyan along the picture's edge, as the console draws it.
    let cyan = |img: &image::RgbImage, y: u32| {
        (300..340).any(|x| {
            let p = img.get_pixel(x, y).0;
            p[0] < 120 && p[2] > 150 && p[2] as i32 - p[0] as i32 > 80
        })
    };
    assert!(cyan(&drawn, 0) && !cyan(&plain, 0));

    let unknown = run(gridwatch()
        .arg("snapshot")
        .arg("--config")
        .arg(&config)
        .arg("nope"));
    assert_ne!(unknown.code(), 0);
    let line = unknown.error_line();
    assert!(
        line.contains("nope") && line.contains("door, gone"),
        "{line}"
    );
    let gone = run(gridwatch()
        .arg("snapshot")
        .arg("--config")
        .arg(&config)
        .arg("gone")
        .arg("-o")
        .arg(dir.path().join("x.jpg")));
    assert_ne!(gone.code(), 0);
    assert!(
        gone.error_line().contains("no-such-file.mp4"),
        "{}",
        gone.stderr()
    );
    assert!(!dir.path().join("x.jpg").exists());
}
