"""A webhook receiver for the actions tests: answers every POST with 200 and appends one
JSON line per request ({"path", "received_at", "body"}) to the file given, flushed at once.

    python3 server.py PORT OUT.jsonl
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, OUT = int(sys.argv[1]), sys.argv[2]


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8")
        with open(OUT, "a", encoding="utf-8") as out:
            out.write(json.dumps({"path": self.path, "received_at": time.time(),
                                  "content_type": self.headers.get("Content-Type"),
                                  "body": body}, ensure_ascii=False) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errcode":0}')

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Receiver).serve_forever()
