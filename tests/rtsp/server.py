#!/usr/bin/python3
"""A real RTSP server for gridwatch's tests (GStreamer's gst-rtsp-server, Debian packages
gir1.2-gst-rtsp-server-1.0 + python3-gi), serving Matroska H.264 clips at real time, like a
camera.

    server.py --port 8554 --mount cam1=clip.mkv [--mount ...] [--user U --password P]

Each mount `/NAME` plays FILE (H.264 without B-frames in Matroska; tests/src/rtsp.rs makes
them) once, shared between clients. Clips are made long enough for a test rather than looped,
since a looping file source restarts timestamps. Prints "ready" on stdout once listening.
Must run with Debian's python3 (for gi).
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", action="append", required=True, help="NAME=FILE.mkv")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    for spec in args.mount:
        name, rest = spec.split("=", 1)
        path = rest
        factory = GstRtspServer.RTSPMediaFactory()
        # Clips named *.hevc.mkv carry H.265, the rest H.264.
        codec = "h265" if path.endswith(".hevc.mkv") else "h264"
        factory.set_launch(
            f'( filesrc location="{path}" ! matroskademux ! {codec}parse '
            f"! rtp{codec}pay name=pay0 pt=96 config-interval=1 )"
        )
        factory.set_shared(True)
        if args.user:
            factory.add_role_from_structure(Gst.Structure.new_from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
        mounts.add_factory("/" + name, factory)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
