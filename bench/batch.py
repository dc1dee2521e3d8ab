#!/usr/bin/env python3
"""Herald's batch benchmark: POST /api/v1/send/batch with 1000-entry batches.

    python3 bench/batch.py [--duration 10] [--connections 4] [--rounds 2]

With the gateway pinned to CPU 0 and wrk plus the zero-latency SNS sink
(examples/bench_sns_sink.rs) on CPU 1 (bench/run.py's setup), each round runs:
  - latency: one connection sending 1000-entry batches back to back; p50/p99
    of the whole batch's answer (every entry durably published before it);
  - throughput: --connections connections; messages accepted per second
    (batches/s x 1000, checked against the messages that reached the sink);
for the SNS mode with aws-sdk-sns, with SNS_CLIENT=lean, and for the embedded
default (SQLite group commit; console delivery to /dev/null on the same core).
Needs wrk (apt-get install wrk) and taskset. Results go to
bench/results/<date>-batch.txt.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402  (bench/run.py: process and wrk helpers)

BATCH = 1000


def batch_body():
    messages = [{"to": f"+1415555{i:04d}"} for i in range(BATCH)]
    return json.dumps({"defaults": {"message": "Sale ends tonight: 20% off everything"},
                       "messages": messages}, separators=(",", ":"))


def measure(name, env, port, duration, connections, script, sink_port=None):
    proc = base.start([os.path.join(base.RELEASE, "herald-gateway")], env)
    try:
        base.wait_port(port, proc)
        url = f"http://127.0.0.1:{port}/api/v1/send/batch"
        base.wrk(url, 1, 1, script)  # warm-up
        latency = base.wrk(url, duration, 1, script)
        before = base.sink_stats(sink_port) if sink_port else None
        load = base.wrk(url, duration, connections, script)
        import time
        time.sleep(0.5)
        reached = base.sink_stats(sink_port)["messages"] - before["messages"] if sink_port else None
        accepted_batches = load["requests"] - load["non2xx"]
        return {
            "name": name,
            "p50_ms": latency["p50"], "p99_ms": latency["p99"],
            "msgs_per_s": load["rps"] * BATCH,
            "non2xx": latency["non2xx"] + load["non2xx"],
            "reached_sink": reached, "accepted": accepted_batches * BATCH,
            "rss": base.peak_rss_mib(proc),
        }
    finally:
        base.stop(proc)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()
    if not args.no_build:
        base.subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "herald-gateway",
                             "--example", "bench_sns_sink"], cwd=base.ROOT, check=True)
    work = tempfile.mkdtemp(prefix="herald-batch-bench-")
    body_path = os.path.join(work, "batch.json")
    with open(body_path, "w") as f:
        f.write(batch_body())
    script = os.path.join(work, "post.lua")
    with open(script, "w") as f:
        f.write(f"local f = io.open('{body_path}'); wrk.body = f:read('*a'); f:close()\n"
                f"wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
                f"wrk.headers['x-api-key'] = '{base.KEY}'\n")
    sink_port = base.free_port()
    sink = base.start([os.path.join(base.RELEASE, "examples", "bench_sns_sink"), f"127.0.0.1:{sink_port}"], cpu="1")
    base.wait_port(sink_port, sink)
    common = {"API_KEYS": f"bench:{base.KEY}", "HOST": "127.0.0.1", "LOG_LEVEL": "warn"}
    rows = []
    try:
        for r in range(args.rounds):
            port = base.free_port()
            sns = dict(common, PORT=str(port), SNS_TOPIC_ARN=base.TOPIC,
                       AWS_ENDPOINT_URL=f"http://127.0.0.1:{sink_port}", AWS_REGION="us-east-1",
                       AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
            rows.append(measure("SNS (aws-sdk-sns)", sns, port, args.duration, args.connections, script, sink_port))
            rows.append(measure("SNS (SNS_CLIENT=lean)", dict(sns, SNS_CLIENT="lean"), port, args.duration,
                                args.connections, script, sink_port))
            data_dir = tempfile.mkdtemp(prefix="data-", dir=work)
            emb = dict(common, PORT=str(port), HERALD_DATA_DIR=data_dir, DELIVERY="console")
            rows.append(measure("embedded (durable)", emb, port, args.duration, args.connections, script))
    finally:
        base.stop(sink)

    lines = [f"Herald batch benchmark, {datetime.datetime.now():%Y-%m-%d %H:%M}: {BATCH}-entry batches, "
             f"gateway on CPU 0, wrk and the SNS sink on CPU 1; {args.rounds} round(s) x {args.duration} s; "
             f"throughput with {args.connections} connections",
             f"{'mode':<24}{'p50 ms':>8}{'p99 ms':>8}{'msgs/s':>10}{'RSS MiB':>9}{'non-2xx':>8}  reached sink / accepted"]
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        med = lambda k: statistics.median(r[k] for r in mine)  # noqa: E731
        reached = ", ".join(f"{r['reached_sink']}/{r['accepted']}" for r in mine if r["reached_sink"] is not None)
        lines.append(f"{name:<24}{med('p50_ms'):>8.1f}{med('p99_ms'):>8.1f}{med('msgs_per_s'):>10.0f}"
                     f"{med('rss'):>9.1f}{sum(r['non2xx'] for r in mine):>8}  {reached or '-'}")
    lines.append("targets: 1000-entry batch p50 <= 50 ms (embedded and SNS sink); >= 50,000 msgs/s through batches")
    text = "\n".join(lines)
    print(text)
    path = os.path.join(base.ROOT, "bench", "results", f"{datetime.date.today()}-batch.txt")
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"written to {os.path.relpath(path, base.ROOT)}")


if __name__ == "__main__":
    main()
