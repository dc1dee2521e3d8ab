#!/usr/bin/env python3
"""Memory under hostile requests (issue 18, items 2 and 5): the gateway's peak
resident memory (VmHWM) against its idle baseline, measured in the same run.

    python3 bench/hostile_memory.py [--binary target/release/herald-gateway]

Starts one gateway on the embedded default with no webhook secrets, then:
  1. 8 batches at once, each a 63 KB body built to amplify (`defaults` with
     6,000 short unknown keys, `messages` = 1,000 x {}): answer size and time,
     and the peak memory (before the fix: a 347.6 MB answer each, 1.4 GiB for
     one, 4.1-4.7 GiB for eight);
  2. 200 unsigned 4 MiB POSTs to the disabled webhook routes, 20 at a time
     (before: +840-1,020 MiB, each 404 only after the whole body).
Prints each phase's peak as a ratio of the idle resident size. Bounded: a
few seconds and 228 requests.
"""
import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import KEY, free_port, wait_port  # noqa: E402  (bench/run.py's helpers)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found")


def post(port, path, body, headers):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    for k, v in headers.items():
        request.add_header(k, v)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            answer = r.read()
            code = r.status
    except urllib.error.HTTPError as e:
        answer = e.read()
        code = e.code
    except OSError:
        # Answered and closed before the whole body was sent (a refusal that
        # did not wait for the body): the client sees the connection reset.
        answer, code = b"", "closed-early"
    return code, len(answer), time.monotonic() - started


@contextlib.contextmanager
def embedded_gateway(binary, prefix):
    """A gateway on the embedded default (console delivery) on a free port,
    started and settled: (port, process). Stopped, and its data removed, after."""
    port = free_port()
    data = tempfile.mkdtemp(prefix=prefix)
    env = {"PATH": os.environ["PATH"], "API_KEYS": f"bench:{KEY}", "HOST": "127.0.0.1",
           "PORT": str(port), "HERALD_DATA_DIR": data, "DELIVERY": "console", "LOG_LEVEL": "warn"}
    gateway = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, gateway)
        time.sleep(0.5)
        yield port, gateway
    finally:
        gateway.terminate()
        gateway.wait(timeout=20)
        shutil.rmtree(data, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/herald-gateway")
    args = parser.parse_args()
    with embedded_gateway(args.binary, "herald-hostile-") as (port, gateway):
        idle = status_kib(gateway.pid, "VmRSS")
        print(f"idle resident: {idle / 1024:.1f} MiB")

        defaults = {f"k{i}": 0 for i in range(6000)}
        hostile = json.dumps({"defaults": defaults, "messages": [{}] * 1000}, separators=(",", ":")).encode()
        headers = {"x-api-key": KEY, "content-type": "application/json"}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: post(port, "/api/v1/send/batch", hostile, headers), range(8)))
        peak = status_kib(gateway.pid, "VmHWM")
        codes = sorted({str(r[0]) for r in results})
        print(f"8 hostile batches of {len(hostile)} bytes at once: status {codes}, "
              f"answers {max(r[1] for r in results)} bytes at most, slowest {max(r[2] for r in results) * 1000:.0f} ms; "
              f"peak resident {peak / 1024:.1f} MiB = {peak / idle:.2f} x idle")

        big = b"x" * (4 << 20)
        routes = ["/webhooks/whatsapp", "/webhooks/infobip", "/webhooks/infobip/inbound"]
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results = list(pool.map(
                lambda i: post(port, routes[i % 3], big, {"content-type": "application/json"}), range(200)))
        peak2 = status_kib(gateway.pid, "VmHWM")
        codes = sorted({str(r[0]) for r in results})
        print(f"200 unsigned 4 MiB POSTs to disabled webhook routes: status {codes}; "
              f"peak resident {peak2 / 1024:.1f} MiB = {peak2 / idle:.2f} x idle")


if __name__ == "__main__":
    sys.exit(main())
