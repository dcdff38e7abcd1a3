//! Every kind of bad input gets one clear line on stderr, a documented exit code, and no
//! panic: config problems (2), model and ONNX Runtime problems (3), media problems (4).

use std::path::{Path, PathBuf};

use gridwatch_e2e::*;

const USAGE: i32 = 2;
const MODEL: i32 = 3;
const INPUT: i32 = 4;

fn replay(config: &Path, input: &Path, out: &Path) -> Run {
    run(&mut replay_command(config, input, out, &[]))
}

fn assert_fails(run: &Run, code: i32, needles: &[&str]) {
    let line = run.error_line();
    assert_eq!(run.code(), code, "exit code; error line: {line}");
    for needle in needles {
        assert!(line.contains(needle), "`{needle}` not in: {line}");
    }
}

// --- config -------------------------------------------------------------------------------

#[test]
fn missing_config() {
    let r = run(gridwatch().args(["check", "--config", "/nonexistent/gridwatch.toml"]));
    assert_fails(
        &r,
        USAGE,
        &[
            "cannot read config /nonexistent/gridwatch.toml",
            "No such file",
        ],
    );
}

#[test]
fn bad_toml_syntax_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[site]\nid = \"x\"\ngrid_code = \"1\n").unwrap();
    let r = run(gridwatch().arg("check").arg("--config").arg(&path));
    assert_fails(&r, USAGE, &[&format!("{}:3:", path.display())]);
}

#[test]
fn unknown_key_names_file_line_column_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[cameras]]\nid = \"gate\"\nurl = \"x.mp4\"\ndetect_fsp = 5\n",
    );
    let r = run(gridwatch().arg("check").arg("--config").arg(&path));
    assert_fails(
        &r,
        USAGE,
        &[
            &format!("{}:11:1:", path.display()),
            "cameras[0].detect_fsp",
            "unknown field `detect_fsp`",
        ],
    );
}

#[test]
fn invalid_value_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "[detector]\nconfidence = 1.5\n");
    let r = run(gridwatch().arg("check").arg("--config").arg(&path));
    assert_fails(
        &r,
        USAGE,
        &[":9:14:", "detector.confidence", "must be in (0, 1)"],
    );
}

/// Found by probing: values `gridwatch check` accepted though they cannot work, and errors
/// without a position in the file. Each is now refused at its line and column.
#[test]
fn values_that_cannot_work_are_refused_at_their_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let zone = |polygon: &str| {
        format!(
            "[[cameras]]\nid = \"gate\"\nurl = \"x.mp4\"\n[[cameras.zones]]\nid = \"lane\"\npolygon = {polygon}\n"
        )
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "[incidents]\nupdate_every = \"0s\"\n".into(),
            "incidents.update_every",
            "at least 1s",
        ),
        (
            zone("[[0.1, 0.1, 0.5], [0.9, 0.1], [0.9, 0.9]]"),
            "cameras[0].zones[0].polygon",
            "3 coordinate(s)",
        ),
        (
            zone("[[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]"),
            "cameras[0].zones[0].polygon",
            "encloses no area",
        ),
        (
            "[mqtt]\nhost = \"127.0.0.1\"\nport = 0\n".into(),
            "mqtt.port",
            "1..=65535",
        ),
        (
            "[mqtt]\nhost = \"127.0.0.1\"\n[mqtt.tls]\nca_file = \"/nonexistent/ca.pem\"\n".into(),
            "mqtt.tls.ca_file",
            "cannot read /nonexistent/ca.pem",
        ),
    ];
    for (extra, field, message) in cases {
        let path = write_config(dir.path(), &extra);
        let r = run(gridwatch().arg("check").arg("--config").arg(&path));
        let line = r.error_line();
        assert_eq!(r.code(), USAGE, "{line}");
        assert!(
            line.contains(&format!("error: {}:", path.display())),
            "names the file: {line}"
        );
        let position = line
            .split(&format!("{}:", path.display()))
            .nth(1)
            .unwrap_or_default();
        let mut numbers = position.split(':').take(2);
        assert!(
            numbers.all(|n| n.parse::<usize>().is_ok()),
            "line:col after the file: {line}"
        );
        assert!(line.contains(field) && line.contains(message), "{line}");
    }
    // A file that is not UTF-8.
    let path = dir.path().join("latin1.toml");
    std::fs::write(&path, b"[site]\nid = \"x\"\nname = \"caf\xe9\"\n").unwrap();
    let r = run(gridwatch().arg("check").arg("--config").arg(&path));
    assert_fails(
        &r,
        USAGE,
        &[&format!("{}:3:12:", path.display()), "not UTF-8"],
    );
}

#[test]
fn bad_command_line_is_a_usage_error() {
    let r = run(gridwatch().args(["replay", "--no-such-flag"]));
    assert_eq!(r.code(), USAGE);
    let r = run(gridwatch().args([
        "replay",
        "--config",
        "x",
        "--input",
        "y",
        "--start-time",
        "tonight",
    ]));
    // The config is read first; a missing one is also a usage error.
    assert_eq!(r.code(), USAGE);
}

// --- model and runtime ----------------------------------------------------------------------

/// A manifest like the built-in one, with `edit` applied, in `dir`.
fn manifest(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("models/yolox_nano.toml")).unwrap();
    let path = dir.join("model.toml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

fn detect_with(manifest: &Path, model_dir: Option<&Path>) -> Run {
    detect_with_backend(manifest, model_dir, "ort")
}

fn detect_with_backend(manifest: &Path, model_dir: Option<&Path>, backend: &str) -> Run {
    let mut cmd = gridwatch();
    cmd.arg("detect")
        .arg(media("dog.jpg"))
        .args(["--backend", backend])
        .arg("--model")
        .arg(manifest);
    if let Some(dir) = model_dir {
        cmd.env("GRIDWATCH_MODEL_DIR", dir);
    }
    run(&mut cmd)
}

#[test]
fn missing_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), |t| {
        t.replace("file = \"yolox_nano.onnx\"", "file = \"absent.onnx\"")
    });
    let r = detect_with(&m, Some(dir.path()));
    assert_fails(
        &r,
        MODEL,
        &["absent.onnx not found", "gridwatch models fetch"],
    );
}

#[test]
fn corrupt_model_file_fails_its_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(model_path()).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(dir.path().join("yolox_nano.onnx"), &bytes).unwrap();
    let r = run(gridwatch()
        .args(["detect"])
        .arg(media("dog.jpg"))
        .env("GRIDWATCH_MODEL_DIR", dir.path()));
    assert_fails(&r, MODEL, &["yolox_nano.onnx: sha256 mismatch", "corrupt"]);
}

#[test]
fn sha256_not_in_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), |t| {
        t.replace(
            "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
            &"ab".repeat(32),
        )
        .replace(
            "c789161ed43c8269fcd4e67c67eeeb4e80c622da2eb296a20bc6007bd18a0b7d",
            &"cd".repeat(32),
        )
    });
    let r = detect_with(&m, None);
    assert_fails(&r, MODEL, &["sha256 mismatch", &"ab".repeat(32)]);
}

#[test]
fn corrupt_model_whose_checksum_is_accepted_fails_to_load() {
    // A file that passes the manifest's checksum but is not a valid ONNX graph: ONNX
    // Runtime's parse error must come out as one line.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("broken.onnx");
    std::fs::write(&model, b"this is not a protobuf").unwrap();
    let sum = gridwatch::assets::sha256_file(&model).unwrap();
    let m = manifest(dir.path(), |t| {
        t.replace("file = \"yolox_nano.onnx\"", "file = \"broken.onnx\"")
            .replace(
                "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
                &sum,
            )
    });
    let r = detect_with(&m, Some(dir.path()));
    assert_fails(&r, MODEL, &["cannot load model", "broken.onnx"]);
}

/// Both inference backends check the graph against the manifest at load time.
#[test]
fn manifest_that_does_not_match_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), |t| {
        t.replace("shape = [1, 3, 416, 416]", "shape = [1, 3, 640, 640]")
    });
    for backend in ["ort", "tract"] {
        let r = detect_with_backend(&m, None, backend);
        assert_fails(
            &r,
            MODEL,
            &[
                "does not match its manifest",
                "[1, 3, 416, 416]",
                "[1, 3, 640, 640]",
            ],
        );
    }
}

#[test]
fn manifest_with_wrong_class_count() {
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path(), |t| t.replace("\"toothbrush\",", ""));
    for backend in ["ort", "tract"] {
        let r = detect_with_backend(&m, None, backend);
        assert_fails(
            &r,
            MODEL,
            &["output `output`", "79 classes", "[1, 3549, 84]"],
        );
    }
}

#[test]
fn missing_onnx_runtime_named_in_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[detector]\nruntime_library = \"/nonexistent/libonnxruntime.so\"\n",
    );
    let r = run(gridwatch().arg("check").arg("--config").arg(&config));
    assert_fails(
        &r,
        MODEL,
        &[
            "cannot load ONNX Runtime from /nonexistent/libonnxruntime.so",
            "detector.runtime_library",
        ],
    );
}

#[test]
fn bad_ort_dylib_path() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not an ELF file").unwrap();
    let r = run(gridwatch()
        .arg("detect")
        .arg(media("dog.jpg"))
        .env("ORT_DYLIB_PATH", &fake));
    assert_fails(&r, MODEL, &["cannot load ONNX Runtime", "ORT_DYLIB_PATH"]);
}

#[test]
fn no_onnx_runtime_anywhere_says_what_to_do() {
    // A copy of the binary outside the checkout finds no project-local install; with an
    // empty library path nothing is left to try.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("gridwatch");
    std::fs::copy(gridwatch_bin(), &bin).unwrap();
    let r = run(std::process::Command::new(&bin)
        .arg("detect")
        .arg(media("dog.jpg"))
        .env("GRIDWATCH_LOG", "warn")
        .env("GRIDWATCH_MODEL_DIR", model_dir())
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("GRIDWATCH_LOCAL")
        .env("LD_LIBRARY_PATH", dir.path()));
    assert_fails(
        &r,
        MODEL,
        &[
            "ONNX Runtime library not found",
            "scripts/setup.sh",
            "ORT_DYLIB_PATH",
        ],
    );
}

// --- media ------------------------------------------------------------------------------------

struct Media {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Media {
    fn new() -> Media {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), "");
        Media { dir, config }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn replay(&self, input: &Path) -> (Run, PathBuf) {
        let out = self.path("out.jsonl");
        (replay(&self.config, input, &out), out)
    }
}

#[test]
fn missing_video() {
    let m = Media::new();
    let (r, _) = m.replay(Path::new("/nonexistent/clip.mp4"));
    assert_fails(
        &r,
        INPUT,
        &["/nonexistent/clip.mp4: cannot open", "No such file"],
    );
}

#[test]
fn truncated_video_keeps_what_was_decoded() {
    let m = Media::new();
    let bytes = std::fs::read(media("car-detection.mp4")).unwrap();
    let cut = m.path("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (r, out) = m.replay(&cut);
    assert_fails(&r, INPUT, &["truncated", "30.2 s"]);
    let frames = read_jsonl(&out);
    assert!(
        frames.len() > 50,
        "the decodable half was processed: {}",
        frames.len()
    );
}

#[test]
fn corrupt_video_is_reported_and_the_good_frames_kept() {
    let m = Media::new();
    let mut bytes = std::fs::read(media("car-detection.mp4")).unwrap();
    // Garbage over a few stretches of the media data (the moov index is at the start).
    for start in (600_000..2_400_000).step_by(300_000) {
        for (i, b) in bytes[start..start + 300].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
    }
    let bad = m.path("corrupt.mp4");
    std::fs::write(&bad, &bytes).unwrap();
    let (r, out) = m.replay(&bad);
    assert_fails(&r, INPUT, &["corrupt stream", "good frames were processed"]);
    assert!(read_jsonl(&out).len() > 100);
}

#[test]
fn non_video_file() {
    let m = Media::new();
    let junk = m.path("notes.mp4");
    std::fs::write(&junk, "meeting notes, not a video\n".repeat(100)).unwrap();
    let (r, _) = m.replay(&junk);
    assert_fails(&r, INPUT, &["not a media file"]);
}

#[test]
fn audio_only_file() {
    let m = Media::new();
    let audio = m.path("sound.m4a");
    ffmpeg(&["-f", "lavfi", "-i", "sine=d=1", audio.to_str().unwrap()]);
    let (r, _) = m.replay(&audio);
    assert_fails(&r, INPUT, &["no video stream", "audio"]);
}

#[test]
fn unsupported_codec() {
    // a64multi (Commodore 64 multicolour) is a codec FFmpeg can encode but not decode.
    let m = Media::new();
    let clip = m.path("c64.nut");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=320x200:d=1:r=5",
        "-c:v",
        "a64multi",
        "-f",
        "nut",
        clip.to_str().unwrap(),
    ]);
    let (r, _) = m.replay(&clip);
    assert_fails(&r, INPUT, &["unsupported video codec"]);
}

#[test]
fn image_that_is_not_an_image() {
    let m = Media::new();
    let junk = m.path("photo.jpg");
    std::fs::write(&junk, [0u8; 64]).unwrap();
    let r = run(gridwatch().arg("detect").arg(&junk));
    assert_eq!(r.code(), INPUT, "{}", r.stderr());
    r.error_line();
}

#[test]
fn unwritable_output_is_reported() {
    let m = Media::new();
    let r = replay(
        &m.config,
        &media("car-detection.mp4"),
        Path::new("/nonexistent/dir/out.jsonl"),
    );
    assert_fails(
        &r,
        1,
        &["cannot create the output file /nonexistent/dir/out.jsonl"],
    );
}

#[test]
fn full_disk_while_writing_is_reported() {
    // /dev/full accepts the open and fails every write with ENOSPC.
    let m = Media::new();
    let r = replay(
        &m.config,
        &media("car-detection.mp4"),
        Path::new("/dev/full"),
    );
    assert_fails(
        &r,
        1,
        &["writing the detections output", "No space left on device"],
    );
}

#[test]
fn zone_naming_a_label_group_the_model_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[cameras]]\nid = \"gate\"\nurl = \"x.mp4\"\n\n[[cameras.zones]]\nid = \"lane\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\nobjects = [\"ebike\"]\n",
    );
    let r = run(gridwatch().arg("check").arg("--config").arg(&config));
    assert_fails(
        &r,
        USAGE,
        &[
            &format!("{}:15:11:", config.display()),
            "cameras[0].zones[0].objects",
            "`ebike`",
        ],
    );
}

#[test]
fn charging_rule_requiring_a_cable_the_model_cannot_see() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[cameras]]\nid = \"gate\"\nurl = \"x.mp4\"\n\n[[cameras.zones]]\nid = \"hall\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n[cameras.zones.fly_wire_charging]\nrequire_cable = true\n",
    );
    let r = run(gridwatch().arg("check").arg("--config").arg(&config));
    assert_fails(&r, USAGE, &["fly_wire_charging", "charging_cable"]);
}
