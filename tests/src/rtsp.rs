//! A real RTSP server for the tests: GStreamer's gst-rtsp-server (tests/rtsp/server.py, run
//! with Debian's python3 and python3-gi), serving clips at real time on loopback. It can be
//! killed and restarted on the same port to play a camera dropping off the network.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{broker::free_port, derive_once, ffmpeg, media, repo_root};

/// A clip re-encoded for RTSP (H.264 without B-frames, Matroska), `loops` times the source,
/// cached under target/rtsp-clips.
pub fn rtsp_clip(source: &Path, loops: u32, input_args: &[&str]) -> PathBuf {
    let stem = source.file_stem().unwrap().to_string_lossy();
    let loops_arg = loops.saturating_sub(1).to_string();
    let mut args: Vec<&str> = Vec::new();
    if input_args.is_empty() {
        args.extend(["-stream_loop", &loops_arg]);
    }
    args.extend(input_args);
    encode(&format!("{stem}-x{loops}"), source, &args, None)
}

/// Video codec of a test clip; the RTSP server picks its payloader from the file name.
#[derive(Clone, Copy)]
enum Codec {
    H264,
    H265,
}

/// Encodes `source` (after `input_args`, optionally through the `-vf` filter) into
/// target/rtsp-clips/NAME.mkv, once.
fn encode(name: &str, source: &Path, input_args: &[&str], filter: Option<&str>) -> PathBuf {
    encode_as(Codec::H264, name, source, input_args, filter)
}

fn encode_as(
    codec: Codec,
    name: &str,
    source: &Path,
    input_args: &[&str],
    filter: Option<&str>,
) -> PathBuf {
    let dir = repo_root().join("target/rtsp-clips");
    std::fs::create_dir_all(&dir).expect("create target/rtsp-clips");
    let suffix = match codec {
        Codec::H264 => "mkv",
        Codec::H265 => "hevc.mkv",
    };
    let out = dir.join(format!("{name}.{suffix}"));
    derive_once(&out, |partial| {
        let mut args: Vec<&str> = input_args.to_vec();
        args.extend(["-i", source.to_str().unwrap(), "-an"]);
        if let Some(filter) = filter {
            args.extend(["-vf", filter]);
        }
        let partial_str = partial.to_str().unwrap();
        match codec {
            Codec::H264 => args.extend(["-c:v", "libx264", "-bf", "0"]),
            Codec::H265 => args.extend([
                "-c:v",
                "libx265",
                "-x265-params",
                "bframes=0:log-level=error",
            ]),
        }
        args.extend([
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            partial_str,
        ]);
        ffmpeg(&args);
    })
}

const PORCH_INPUT: [&str; 6] = ["-loop", "1", "-framerate", "5", "-t", "300"];

/// The porch of dog.jpg (a bicycle and a truck that stand still), 300 s at 768x576: a
/// camera's sub-stream, or its only stream.
pub fn porch_clip() -> PathBuf {
    rtsp_clip(&media("dog.jpg"), 1, &PORCH_INPUT)
}

/// dog.jpg as a still camera at 5 fps for `seconds` (H.264, GOP 5 s).
pub fn still_clip(seconds: u32) -> PathBuf {
    let duration = seconds.to_string();
    encode(
        &format!("dog-still-{seconds}s"),
        &media("dog.jpg"),
        &["-loop", "1", "-framerate", "5", "-t", &duration],
        None,
    )
}

/// The same porch in H.265, as newer cameras send it.
pub fn porch_hevc_clip() -> PathBuf {
    encode_as(
        Codec::H265,
        "dog-hevc",
        &media("dog.jpg"),
        &PORCH_INPUT,
        None,
    )
}

/// The same porch as a 1280x960 main stream.
pub fn porch_main_clip() -> PathBuf {
    encode(
        "dog-main-1280",
        &media("dog.jpg"),
        &PORCH_INPUT,
        Some("scale=1280:960"),
    )
}

pub struct RtspServer {
    pub port: u16,
    mounts: Vec<(String, PathBuf)>,
    credentials: Option<(String, String)>,
    child: Option<Child>,
}

impl RtspServer {
    pub fn start(mounts: &[(&str, &Path)], credentials: Option<(&str, &str)>) -> RtspServer {
        let mut server = RtspServer {
            port: free_port(),
            mounts: mounts
                .iter()
                .map(|(n, p)| (n.to_string(), p.to_path_buf()))
                .collect(),
            credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
            child: None,
        };
        server.resume();
        server
    }

    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{mount}", self.port)
    }

    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(repo_root().join("tests/rtsp/server.py"))
            .arg("--port")
            .arg(self.port.to_string());
        for (name, path) in &self.mounts {
            cmd.arg("--mount").arg(format!("{name}={}", path.display()));
        }
        if let Some((u, p)) = &self.credentials {
            cmd.args(["--user", u, "--password", p]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the RTSP test server (python3-gi, gir1.2-gst-rtsp-server-1.0)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the RTSP server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server, as a camera losing power would vanish.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.kill();
    }
}
