//! The toolchain checks setup runs before any long build (scripts/preflight.sh): each proves
//! what a package should have installed, and a machine without it fails at once with one
//! line naming the package. The cross compiler's case is the one that failed on a fresh
//! machine: `gcc-aarch64-linux-gnu` without `libc6-dev-arm64-cross` (only a Recommends),
//! found 38 minutes in, inside ring's build script.

use std::path::Path;
use std::process::Command;

use gridwatch_e2e::*;

fn preflight(args: &[&str]) -> Run {
    run(Command::new("bash")
        .arg(repo_root().join("scripts/preflight.sh"))
        .args(args))
}

/// The check failed with exactly one line on stderr that names `package`.
fn assert_one_line_naming(r: &Run, package: &str) {
    assert_eq!(r.code(), 1, "{}", r.stderr());
    let stderr = r.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("setup: "), "{stderr}");
    assert!(lines[0].contains(&format!("install {package}")), "{stderr}");
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_native_compiler_builds_links_and_runs_a_program_with_stdint() {
    let r = preflight(&["c", "native", "cc", "gcc libc6-dev", "env"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
}

#[test]
fn a_compiler_without_c_library_headers_is_named_with_the_package_to_install() {
    // The same failure as the fresh machine's: a compiler that finds no <stdint.h> (an empty
    // sysroot stands in for the missing libc6-dev-arm64-cross).
    let empty = tempfile::tempdir().unwrap();
    let cc = format!("cc --sysroot={}", empty.path().display());
    let r = preflight(&["c", "native", &cc, "libc6-dev"]);
    assert_one_line_naming(&r, "libc6-dev");
    assert!(r.stderr().contains("stdint.h"), "{}", r.stderr());
}

#[test]
fn the_aarch64_cross_compiler_builds_a_program_that_runs_under_qemu() {
    // Installed by cross/setup-target.sh, which scripts/test.sh runs before `cargo test`.
    if !have("aarch64-linux-gnu-gcc") || !have("qemu-aarch64") {
        eprintln!(
            "skipped: no aarch64 cross toolchain here (cross/setup-target.sh aarch64 installs it)"
        );
        return;
    }
    let r = preflight(&[
        "c",
        "aarch64",
        "aarch64-linux-gnu-gcc",
        "libc6-dev-arm64-cross",
        "qemu-aarch64",
        "-L",
        "/usr/aarch64-linux-gnu",
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    // Without its C library headers, as on the fresh machine: gcc's own <stdint.h> falls
    // through to the host's /usr/include/stdint.h, which wants bits/libc-header-start.h.
    let gcc_include = run(Command::new("aarch64-linux-gnu-gcc").arg("-print-file-name=include"))
        .stdout()
        .trim()
        .to_string();
    let cc =
        format!("aarch64-linux-gnu-gcc -nostdinc -isystem {gcc_include} -isystem /usr/include");
    let r = preflight(&["c", "aarch64", &cc, "libc6-dev-arm64-cross"]);
    assert_one_line_naming(&r, "libc6-dev-arm64-cross");
    assert!(
        r.stderr().contains("bits/libc-header-start.h"),
        "the fresh machine's error: {}",
        r.stderr()
    );
}

#[test]
fn a_program_that_does_not_run_under_its_emulator_is_reported() {
    let r = preflight(&["c", "native", "cc", "qemu-user", "false"]);
    assert_one_line_naming(&r, "qemu-user");
    assert!(r.stderr().contains("does not run"), "{}", r.stderr());
}

#[test]
fn missing_pkg_config_modules_python_imports_programs_and_files_name_their_package() {
    let r = preflight(&["pkg-config", "libavcodec=libavcodec-dev"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let r = preflight(&[
        "pkg-config",
        "libgridwatch-nothing=libgridwatch-nothing-dev",
    ]);
    assert_one_line_naming(&r, "libgridwatch-nothing-dev");

    let r = preflight(&["python", "python3", "import json=python3"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let r = preflight(&[
        "python",
        "python3",
        "import gridwatch_nothing=python3-nothing",
    ]);
    assert_one_line_naming(&r, "python3-nothing");
    assert!(r.stderr().contains("ModuleNotFoundError"), "{}", r.stderr());
    // The GStreamer element the RTSP test server needs, as setup checks it.
    let r = preflight(&[
        "python",
        "/usr/bin/python3",
        "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('rtph264pay')=gstreamer1.0-plugins-good",
    ]);
    assert_eq!(r.code(), 0, "{}", r.stderr());

    let r = preflight(&["commands", "ffmpeg=ffmpeg"]);
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let r = preflight(&["commands", "gridwatch-nothing=gridwatch-tools"]);
    assert_one_line_naming(&r, "gridwatch-tools");

    let r = preflight(&["files", "/nonexistent/font.ttc=fonts-nothing"]);
    assert_one_line_naming(&r, "fonts-nothing");
}

#[test]
fn setup_lists_every_package_it_installs_and_readme_names_them() {
    // README's list and the scripts' arrays are kept in step: every package setup.sh and
    // cross/setup-target.sh install by name appears in README.
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let setup = std::fs::read_to_string(repo_root().join("scripts/setup.sh")).unwrap();
    let start = setup.find("apt_packages=(").unwrap();
    let end = start + setup[start..].find("\n)").unwrap();
    let packages: Vec<&str> = setup[start + "apt_packages=(".len()..end]
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(str::split_whitespace)
        .collect();
    assert!(packages.len() > 20, "{packages:?}");
    let targets = std::fs::read_to_string(repo_root().join("cross/targets.sh")).unwrap();
    let cross: Vec<&str> = targets
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("GCC_PACKAGE=")
                .or_else(|| l.strip_prefix("LIBC_PACKAGE="))
        })
        .filter(|p| !p.contains('"'))
        .collect();
    assert!(cross.contains(&"libc6-dev-arm64-cross"), "{cross:?}");
    for package in packages.iter().chain(&cross).chain(&["qemu-user"]) {
        assert!(
            readme.contains(&format!("`{package}`")),
            "README does not list `{package}`"
        );
    }
    assert!(Path::new(&repo_root().join("scripts/preflight.sh")).exists());
}
