//! Deployment: the x86_64 .deb built by `cross/build.sh` (from the test build of the binary),
//! unpacked into a scratch root like a box's, must run from there (its own ONNX Runtime and
//! bundled model, nothing from the checkout), and its systemd unit must pass
//! `systemd-analyze verify`; the daemon must speak systemd's notify protocol (ready,
//! watchdog, stopping) to a real notify socket.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gridwatch_e2e::*;

/// The .deb and tarball, built once for every test here.
struct Built {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    tarball: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bin = gridwatch_bin();
        let profile = if bin.parent().is_some_and(|d| d.ends_with("release")) {
            "release"
        } else {
            "dev"
        };
        run_ok(
            Command::new(repo_root().join("cross/build.sh"))
                .args(["x86_64", "--profile", profile, "--package-only"])
                .env("GRIDWATCH_DIST", dir.path()),
        );
        let find = |suffix: &str| {
            std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(suffix))
                .unwrap_or_else(|| panic!("no *{suffix} in {}", dir.path().display()))
        };
        Built {
            deb: find("_amd64.deb"),
            tarball: find("-x86_64.tar.gz"),
            _dir: dir,
        }
    })
}

/// The .deb unpacked with `dpkg -x` into a scratch root.
fn unpacked_deb() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("dpkg")
            .arg("-x")
            .arg(&built().deb)
            .arg(root.path()),
    );
    root
}

fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    run_ok(Command::new("dpkg-deb").args(args).arg(deb)).stdout()
}

/// A command with none of the checkout's environment, so only what the package ships counts.
fn as_on_a_box(program: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    for var in [
        "GRIDWATCH_LOCAL",
        "GRIDWATCH_MODEL_DIR",
        "GRIDWATCH_MEDIA_DIR",
        "ORT_DYLIB_PATH",
        "XDG_CACHE_HOME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GRIDWATCH_CACHE_DIR", home.join("cache"))
        .env("HOME", home)
        .current_dir(home);
    cmd
}

#[test]
fn deb_has_the_layout_an_installer_expects() {
    let deb = &built().deb;
    let control = dpkg_deb(&["--field"], deb);
    for expected in [
        "Package: gridwatch",
        "Architecture: amd64",
        "libavcodec59",
        "adduser",
    ] {
        assert!(control.contains(expected), "{expected} in:\n{control}");
    }
    let files = dpkg_deb(&["--contents"], deb);
    for path in [
        "./usr/bin/gridwatch",
        "./usr/lib/gridwatch/libonnxruntime.so",
        "./usr/share/gridwatch/models/yolox_nano.toml",
        "./usr/share/gridwatch/models/yolox_nano.onnx",
        "./etc/gridwatch/config.toml",
        "./usr/lib/systemd/system/gridwatch.service",
        "./usr/share/doc/gridwatch/deploy.md",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(path)),
            "{path} in:\n{files}"
        );
    }
    // The config may hold credentials: not world-readable.
    let config_line = files
        .lines()
        .find(|l| l.ends_with("./etc/gridwatch/config.toml"))
        .unwrap();
    assert!(config_line.starts_with("-rw-r-----"), "{config_line}");

    let control_dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(deb)
            .arg(control_dir.path()),
    );
    let read = |name: &str| std::fs::read_to_string(control_dir.path().join(name)).unwrap();
    assert_eq!(read("conffiles").trim(), "/etc/gridwatch/config.toml");
    let postinst = read("postinst");
    assert!(postinst.contains("adduser --system"), "{postinst}");
    // cargo-deb's systemd snippet: enabled on install, so it starts on the next boot.
    assert!(postinst.contains("deb-systemd-helper"), "{postinst}");
    for script in ["postinst", "postrm", "prerm"] {
        run_ok(
            Command::new("sh")
                .arg("-n")
                .arg(control_dir.path().join(script)),
        );
    }
}

#[test]
fn deb_unpacked_into_a_scratch_root_runs_with_what_it_ships() {
    let root = unpacked_deb();
    let home = tempfile::tempdir().unwrap();
    let bin = root.path().join("usr/bin/gridwatch");
    let check = run_ok(
        as_on_a_box(&bin, home.path())
            .arg("check")
            .arg("--config")
            .arg(root.path().join("etc/gridwatch/config.toml")),
    );
    let out = check.stdout();
    assert!(
        out.contains(&format!(
            "{}/usr/share/gridwatch/models/yolox_nano.onnx verified",
            root.path().display()
        )),
        "the bundled model: {out}"
    );
    assert!(
        out.contains("the package's library directory"),
        "the shipped ONNX Runtime: {out}"
    );
    // And it detects with them.
    let detect = run_ok(
        as_on_a_box(&bin, home.path())
            .arg("detect")
            .arg(media("dog.jpg")),
    );
    let json: serde_json::Value = serde_json::from_str(&detect.stdout()).unwrap();
    let labels: Vec<&str> = json["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    assert!(labels.contains(&"dog"), "{labels:?}");
}

#[test]
fn tarball_runs_from_wherever_it_is_unpacked() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&built().tarball)
            .arg("-C")
            .arg(dir.path()),
    );
    let top = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let home = tempfile::tempdir().unwrap();
    let check = run_ok(
        as_on_a_box(&top.join("bin/gridwatch"), home.path())
            .arg("check")
            .arg("--config")
            .arg(top.join("etc/config.toml")),
    );
    assert!(
        check.stdout().contains("yolox_nano.onnx verified"),
        "{}",
        check.stdout()
    );
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let root = unpacked_deb();
    // What every box has beside the package: systemd's own units and /bin/kill (procps),
    // which the unit's ExecReload uses.
    let units = root.path().join("usr/lib/systemd/system");
    for entry in std::fs::read_dir("/usr/lib/systemd/system").unwrap() {
        let entry = entry.unwrap();
        let target = units.join(entry.file_name());
        if !target.exists() {
            let _ = std::fs::copy(entry.path(), &target);
        }
    }
    std::fs::create_dir_all(root.path().join("bin")).unwrap();
    std::fs::copy("/bin/kill", root.path().join("bin/kill")).unwrap();
    let unit = units.join("gridwatch.service");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.path().display()))
        .arg(&unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    // Unknown keys are only warned about (exit 0), so any output at all is a failure.
    assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    let text = std::fs::read_to_string(&unit).unwrap();
    for hardening in [
        "User=gridwatch",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/gridwatch",
        "Restart=always",
        "WatchdogSec=",
        "Type=notify",
    ] {
        assert!(text.contains(hardening), "{hardening} in the unit");
    }
}

/// Receives the daemon's notify messages until `want` arrives or the deadline passes.
fn wait_for_notify(socket: &UnixDatagram, want: &str, deadline: Instant, seen: &mut Vec<String>) {
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).to_string();
            let found = message.lines().any(|l| l == want);
            seen.push(message);
            if found {
                return;
            }
        }
    }
    panic!("no {want} from the daemon; got {seen:?}");
}

#[test]
fn daemon_tells_systemd_it_is_ready_pings_the_watchdog_and_says_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let camera = format!(
        "[[cameras]]\nid = \"hall\"\nurl = \"{}\"\ndetect_fps = 2\n",
        media("one-by-one-person-detection.mp4").display()
    );
    let config = write_config(dir.path(), &camera);
    let mut daemon = gridwatch()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        // A 2 s watchdog: systemd would expect a ping at least every 2 s.
        .env("WATCHDOG_USEC", "2000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    wait_for_notify(&socket, "READY=1", deadline, &mut seen);
    for _ in 0..3 {
        let before = seen.len();
        wait_for_notify(&socket, "WATCHDOG=1", deadline, &mut seen);
        assert!(seen.len() > before);
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    wait_for_notify(&socket, "STOPPING=1", deadline, &mut seen);
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        seen.iter()
            .any(|m| m.contains("STATUS=watching 1 camera(s)")),
        "{seen:?}"
    );
}

/// `KEY="VALUE"` pairs of a Dockerfile's ENV instructions (with line continuations).
fn dockerfile_env(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines().filter(|l| l.starts_with("ENV ")) {
        let mut rest = &line[4..];
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].trim().to_string();
            let after = &rest[eq + 1..];
            let (value, tail) = match after.strip_prefix('"') {
                Some(quoted) => {
                    let end = quoted.find('"').expect("closing quote");
                    (&quoted[..end], &quoted[end + 1..])
                }
                None => after.split_once(' ').unwrap_or((after, "")),
            };
            out.push((key, value.to_string()));
            rest = tail;
        }
    }
    out
}

#[test]
fn cross_rs_images_match_the_docker_free_recipe() {
    for target in ["aarch64", "armv7"] {
        let dockerfile = repo_root().join(format!("cross/docker/{target}.Dockerfile"));
        let text = std::fs::read_to_string(&dockerfile).unwrap();
        assert!(
            text.contains(&format!("cross/setup-target.sh {target}")),
            "{target}: the image runs the same setup script"
        );
        // What cross/targets.sh exports for the target, with the checkout where the image
        // copies it.
        let exported = run_ok(
            Command::new("bash")
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("CROSS_ROOT", "/opt/gridwatch")
                .current_dir(repo_root())
                .arg("-c")
                .arg(format!(
                    ". cross/targets.sh && cross_target {target} && env"
                )),
        )
        .stdout();
        let exported: Vec<(String, String)> = exported
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| {
                ["CARGO_TARGET_", "PKG_CONFIG_", "BINDGEN_", "CROSS_"]
                    .iter()
                    .any(|p| k.starts_with(p))
                    && *k != "CROSS_ROOT"
            })
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(exported.len() >= 4, "{target}: {exported:?}");
        let mut in_image = dockerfile_env(&text);
        in_image.retain(|(k, _)| k != "GRIDWATCH_CROSS_IMAGE");
        let mut exported_sorted = exported.clone();
        exported_sorted.sort();
        in_image.sort();
        assert_eq!(
            in_image,
            exported_sorted,
            "{target}: {} is out of step with cross/targets.sh: run cross/docker/generate.sh",
            dockerfile.display()
        );
    }
}

#[test]
fn packaged_config_and_its_commented_examples_are_valid() {
    let text = std::fs::read_to_string(repo_root().join("cross/package/config.toml"))
        .unwrap()
        .replace("@BACKEND@", "ort");
    let dir = tempfile::tempdir().unwrap();
    // Uncomment the examples (camera, zone, rule; MQTT stays off: it needs files), keep
    // the storage on a scratch directory.
    let mut in_camera = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.starts_with("# [[cameras]]") {
            in_camera = true;
        }
        let line = if in_camera {
            line.strip_prefix("# ")
                .unwrap_or(line.strip_prefix('#').unwrap_or(line))
        } else {
            line
        };
        lines.push(line.replace("/var/lib/gridwatch", &dir.path().display().to_string()));
    }
    let config = dir.path().join("config.toml");
    std::fs::write(&config, lines.join("\n")).unwrap();
    let check = run_ok(gridwatch().arg("check").arg("--config").arg(&config));
    let out = check.stdout();
    assert!(out.contains("camera      gate-east"), "{out}");
    assert!(
        out.contains("rtsp://***@192.168.1.64"),
        "credentials hidden: {out}"
    );
}
