#!/usr/bin/env python3
"""Inbound media (issue 23): the WhatsApp webhook's acknowledgement while
media downloads run, against the same webhooks without media, in one run.

    python3 bench/inbound_media.py [--binary target/release/herald-gateway] [--count 400]

Starts a fake Graph API (this script: `GET /{version}/{media-id}` gives a
URL, the URL answers 200 KiB after 500 ms) and one gateway on the embedded
default with the WhatsApp webhook on. Then, on one keep-alive connection, at
a fixed 200 webhooks/s, it POSTs --count signed webhooks of one inbound text
message each (baseline), then --count of one inbound image each: every image
queues a download job, and the downloads (4 at a time, half a second each)
run behind the acknowledgements for the whole phase. Prints p50/p99 of the
acknowledgement in each phase and their ratio, then waits (bounded) for the
downloads to finish and prints how many media files were kept.
"""
import argparse
import hashlib
import hmac
import http.client
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import free_port, wait_port  # noqa: E402

APP_SECRET = "bench-app-secret-0123456789abcdef"
NUMBER = "106540352242922"
VERSION = "v25.0"
PHOTO = b"\xff\xd8\xff" + bytes(200 * 1024)


class Graph(http.server.BaseHTTPRequestHandler):
    """The media lookup and the slow download."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.startswith(f"/{VERSION}/"):
            media_id = self.path.rsplit("/", 1)[1]
            port = self.server.server_address[1]
            body = json.dumps({"url": f"http://127.0.0.1:{port}/dl/{media_id}", "mime_type": "image/jpeg",
                               "id": media_id}).encode()
            self.answer(body, "application/json")
        elif self.path.startswith("/dl/"):
            time.sleep(0.5)
            # Distinct bytes per media id: each is its own kept file.
            self.answer(PHOTO + self.path.encode(), "image/jpeg")
        else:
            self.send_error(404)

    def answer(self, body, content_type):
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def webhook(i, kind):
    message = {"from": "16315551181", "id": f"wamid.bench.{kind}.{i}", "timestamp": "1749416383", "type": kind}
    message[kind] = {"body": f"hello {i}"} if kind == "text" else {"id": f"MEDIA-{i}", "mime_type": "image/jpeg"}
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "15550783881", "phone_number_id": NUMBER},
             "contacts": [{"profile": {"name": "Bench"}, "wa_id": "16315551181"}], "messages": [message]}
    body = json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}]}).encode()
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, signature


def phase(port, kind, count, rate):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    start = time.monotonic()
    for i in range(count):
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        body, signature = webhook(i, kind)
        began = time.monotonic()
        conn.request("POST", "/webhooks/whatsapp", body=body,
                     headers={"content-type": "application/json", "x-hub-signature-256": signature})
        response = conn.getresponse()
        response.read()
        times.append(time.monotonic() - began)
        if response.status != 200:
            raise SystemExit(f"webhook answered {response.status}")
    conn.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99) - 1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/herald-gateway")
    parser.add_argument("--count", type=int, default=400)
    args = parser.parse_args()
    graph = ThreadingServer(("127.0.0.1", 0), Graph)
    threading.Thread(target=graph.serve_forever, daemon=True).start()
    port = free_port()
    data = tempfile.mkdtemp(prefix="herald-inbound-")
    env = {"PATH": os.environ["PATH"], "API_KEYS": "bench:bench-key-0123456789abcdef", "HOST": "127.0.0.1",
           "PORT": str(port), "HERALD_DATA_DIR": data, "LOG_LEVEL": "warn",
           "WHATSAPP_ACCESS_TOKEN": "bench-token", "WHATSAPP_PHONE_NUMBER_ID": NUMBER,
           "WHATSAPP_API_BASE_URL": f"http://127.0.0.1:{graph.server_address[1]}",
           "WHATSAPP_APP_SECRET": APP_SECRET, "WHATSAPP_VERIFY_TOKEN": "bench-verify-token-0123456789"}
    gateway = subprocess.Popen([args.binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, gateway)
        text = phase(port, "text", args.count, 200)
        image = phase(port, "image", args.count, 200)
        print(f"{args.count} webhooks at 200/s, one connection")
        print(f"text (no media):         p50 {text[0] * 1000:.2f} ms, p99 {text[1] * 1000:.2f} ms")
        print(f"image (downloads behind): p50 {image[0] * 1000:.2f} ms, p99 {image[1] * 1000:.2f} ms")
        print(f"p99 with downloads / without: x{image[1] / text[1]:.2f}")
        media = os.path.join(data, "media")
        deadline = time.monotonic() + 300
        kept = 0
        while time.monotonic() < deadline:
            kept = len([f for f in os.listdir(media) if f.endswith(".json") and ".up-" not in f]) \
                if os.path.isdir(media) else 0
            if kept >= args.count:
                break
            time.sleep(1)
        print(f"media kept: {kept} of {args.count} (downloads 4 at a time, 0.5 s each)")
    finally:
        gateway.terminate()
        gateway.wait(timeout=20)
        graph.shutdown()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
