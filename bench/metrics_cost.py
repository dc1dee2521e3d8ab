#!/usr/bin/env python3
"""What /metrics costs the gateway per request: METRICS=on against METRICS=off, side by side.

    python3 bench/metrics_cost.py [--rounds 4] [--duration 8] [--connections 64]

The gateway in SNS mode (SNS_CLIENT=lean, to the zero-latency SNS sink of
bench/run.py) is run with metrics on and off, alternately, each round; the
gateway on CPU 0, wrk and the sink on CPU 1, as bench/run.py does. Reported:
each round's req/s and p99 and the medians of the on/off ratios. Issue 13's
budget: the metrics must not move the gateway benchmark by more than 3 %.
Results go to bench/results/<date>-metrics-cost.txt.
"""
import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as base  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "herald-gateway",
                        "--example", "bench_sns_sink"], cwd=base.ROOT, check=True)
    work = tempfile.mkdtemp(prefix="herald-metrics-bench-")
    script = os.path.join(work, "post.lua")
    with open(script, "w") as f:
        f.write(f"wrk.method = 'POST'\nwrk.body = '{base.BODY}'\n"
                f"wrk.headers['Content-Type'] = 'application/json'\nwrk.headers['x-api-key'] = '{base.KEY}'\n")
    sink_port = base.free_port()
    sink = base.start([os.path.join(base.RELEASE, "examples", "bench_sns_sink"), f"127.0.0.1:{sink_port}"], cpu="1")
    base.wait_port(sink_port, sink)
    rows = []
    try:
        for r in range(args.rounds):
            port = base.free_port()
            env = {"API_KEYS": f"bench:{base.KEY}", "HOST": "127.0.0.1", "LOG_LEVEL": "info", "PORT": str(port),
                   "SNS_TOPIC_ARN": base.TOPIC, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{sink_port}",
                   "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                   "SNS_CLIENT": "lean"}
            cmd = [os.path.join(base.RELEASE, "herald-gateway")]
            # Alternate which goes first, so drift hits both alike.
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            row = {}
            for mode in order:
                row[mode] = base.run_server(f"metrics {mode}", cmd, dict(env, METRICS=mode), port,
                                            args.duration, args.connections, script, sink_port)
            rows.append(row)
            print(f"round {r + 1}: on {row['on']['rps']:.0f} req/s p99 {row['on']['p99']:.2f} ms; "
                  f"off {row['off']['rps']:.0f} req/s p99 {row['off']['p99']:.2f} ms", flush=True)
    finally:
        base.stop(sink)
    thr = statistics.median(r["on"]["rps"] / r["off"]["rps"] for r in rows)
    p99 = statistics.median(r["on"]["p99"] / r["off"]["p99"] for r in rows)
    lines = [
        f"Herald metrics cost, {datetime.datetime.now():%Y-%m-%d %H:%M}: gateway SNS mode (lean client) to the "
        f"zero-latency sink, gateway on CPU 0, wrk and sink on CPU 1; {args.rounds} rounds x {args.duration} s, "
        f"{args.connections} connections, METRICS=on and off alternately",
    ] + [f"round {i + 1}: on {r['on']['rps']:.0f} req/s p99 {r['on']['p99']:.2f} ms, non-2xx {r['on']['non2xx']}; "
         f"off {r['off']['rps']:.0f} req/s p99 {r['off']['p99']:.2f} ms, non-2xx {r['off']['non2xx']}"
         for i, r in enumerate(rows)] + [
        f"median on/off throughput {thr:.3f}; median on/off p99 {p99:.3f}",
        "budget: the metrics move the gateway benchmark by at most 3 % (throughput ratio >= 0.97)",
    ]
    text = "\n".join(lines)
    print(text)
    path = os.path.join(base.ROOT, "bench", "results", f"{datetime.date.today()}-metrics-cost.txt")
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"written to {os.path.relpath(path, base.ROOT)}")


if __name__ == "__main__":
    main()
