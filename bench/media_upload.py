#!/usr/bin/env python3
"""Media uploads (issue 23): throughput, and the gateway's resident memory
against its idle baseline and against the bytes in flight, measured in the
same run.

    python3 bench/media_upload.py [--binary target/release/herald-gateway]

Starts one gateway on the embedded default (files under a temporary
HERALD_DATA_DIR), then uploads:
  1. 200 distinct 1 MiB images (image/png), 8 at a time;
  2. 6 distinct 50 MiB documents (application/pdf), 3 at a time (150 MiB in
     flight).
For each phase: MiB/s, the answers' statuses, and the peak resident size
(VmHWM) as a ratio of the idle one and as a share of the bytes in flight.
An upload is read to disk as it arrives, so the peak should not grow with the
file size. Bounded: about 500 MiB written, well under a minute.
"""
import argparse
import concurrent.futures
import http.client
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_memory import embedded_gateway, status_kib  # noqa: E402
from run import KEY  # noqa: E402

MIB = 1 << 20


def body(index, size, magic):
    """`size` bytes starting with `magic`, distinct per `index`."""
    head = magic + index.to_bytes(8, "big")
    block = bytes((i * 7 + index) % 256 for i in range(MIB))
    data = bytearray(head)
    while len(data) < size:
        data += block[: size - len(data)]
    return bytes(data)


def upload(port, data, content_type):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request("POST", "/api/v1/media", body=data,
                     headers={"x-api-key": KEY, "content-type": content_type,
                              "content-length": str(len(data))})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def phase(port, pid, name, count, size, parallel, content_type, magic, idle):
    files = [body(i, size, magic) for i in range(count)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        codes = list(pool.map(lambda d: upload(port, d, content_type), files))
    took = time.monotonic() - started
    peak = status_kib(pid, "VmHWM")
    in_flight = parallel * size / MIB
    print(f"{name}: {count} x {size // MIB} MiB, {parallel} at a time: statuses {sorted(set(codes))}, "
          f"{count * size / MIB / took:.0f} MiB/s; peak resident {peak / 1024:.1f} MiB = "
          f"{peak / idle:.2f} x idle, {(peak - idle) / 1024 / in_flight:.3f} x the {in_flight:.0f} MiB in flight")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/herald-gateway")
    args = parser.parse_args()
    with embedded_gateway(args.binary, "herald-media-") as (port, gateway):
        idle = status_kib(gateway.pid, "VmRSS")
        print(f"idle resident: {idle / 1024:.1f} MiB")
        phase(port, gateway.pid, "1 MiB images", 200, MIB, 8, "image/png", b"\x89PNG\r\n\x1a\n", idle)
        phase(port, gateway.pid, "50 MiB documents", 6, 50 * MIB, 3, "application/pdf", b"%PDF-1.7", idle)

if __name__ == "__main__":
    sys.exit(main())
