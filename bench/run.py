#!/usr/bin/env python3
"""Herald's load benchmark: the gateway against a bare axum baseline, in one run.

    python3 bench/run.py [--rounds 3] [--duration 10] [--connections 64]

What it does, each round, interleaved so that drift on a noisy machine hits both:
  1. baseline (examples/bench_baseline.rs: parse the JSON, answer a fixed 202)
  2. gateway in SNS mode, publishing to a zero-latency SNS sink
     (examples/bench_sns_sink.rs, which counts calls and messages), once with
     aws-sdk-sns (the default) and once with SNS_CLIENT=lean
  3. the gateway's own code over a publisher that accepts at once
     (examples/bench_gateway_null.rs), to split the cost between Herald and the SDK
  4. baseline and gateway again with a single connection (latency at no load)
  5. gateway in embedded mode (durable SQLite queue, console delivery to /dev/null)

The server under test is pinned to CPU 0 (`taskset`), the load generator (wrk)
and the SNS sink to CPU 1. It prints throughput, p50/p99 latency, peak RSS,
SNS calls per accepted message and the gateway/baseline ratios, per round and
as medians. Needs wrk (`apt-get install wrk`) and taskset (util-linux).
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
KEY = "bench-key-0123456789abcdef"
BODY = '{"to":"+14155550123","message":"Your order #1234 has shipped and will arrive on Thursday."}'
TOPIC = "arn:aws:sns:us-east-1:123456789012:herald-bench"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"process exited early with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def start(cmd, env=None, cpu="0", stdout=subprocess.DEVNULL):
    full_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    full_env.update(env or {})
    return subprocess.Popen(["taskset", "-c", cpu] + cmd, env=full_env, stdout=stdout, stderr=subprocess.DEVNULL)


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def peak_rss_mib(proc):
    # taskset execs the server, so the PID is the server's.
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wrk(url, duration, connections, script):
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, url],
        capture_output=True, text=True, check=True,
    ).stdout

    def latency_ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency_ms("50"),
        "p99": latency_ms("99"),
        "requests": total,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def sink_stats(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats") as r:
        return json.load(r)


def run_server(name, cmd, env, port, duration, connections, script, sink_port=None):
    proc = start(cmd, env)
    try:
        wait_port(port, proc)
        before = sink_stats(sink_port) if sink_port else None
        url = f"http://127.0.0.1:{port}/api/v1/send"
        wrk(url, 1, connections, script)  # warm-up: connections, pools, allocator
        if sink_port:
            before = sink_stats(sink_port)
        result = wrk(url, duration, connections, script)
        time.sleep(0.3)  # let the last in-flight publishes land
        result["rss"] = peak_rss_mib(proc)
        if sink_port:
            after = sink_stats(sink_port)
            calls = (after["publishCalls"] + after["batchCalls"]) - (before["publishCalls"] + before["batchCalls"])
            messages = after["messages"] - before["messages"]
            accepted = result["requests"] - result["non2xx"]
            result["calls_per_msg"] = calls / accepted if accepted else float("nan")
            result["sink_messages"] = messages
            result["accepted"] = accepted
        return result
    finally:
        stop(proc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed: apt-get install wrk util-linux")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "herald-gateway",
                        "--example", "bench_baseline", "--example", "bench_sns_sink",
                        "--example", "bench_gateway_null"], cwd=ROOT, check=True)

    work = tempfile.mkdtemp(prefix="herald-bench-")
    script = os.path.join(work, "post.lua")
    with open(script, "w") as f:
        f.write(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\n"
                f"wrk.headers['Content-Type'] = 'application/json'\nwrk.headers['x-api-key'] = '{KEY}'\n")

    sink_port = free_port()
    sink = start([os.path.join(RELEASE, "examples", "bench_sns_sink"), f"127.0.0.1:{sink_port}"], cpu="1")
    wait_port(sink_port, sink)

    common = {"API_KEYS": f"bench:{KEY}", "HOST": "127.0.0.1", "LOG_LEVEL": "info"}
    rows = []
    try:
        for r in range(1, args.rounds + 1):
            port = free_port()
            baseline_cmd = [os.path.join(RELEASE, "examples", "bench_baseline"), f"127.0.0.1:{port}"]
            gateway_cmd = [os.path.join(RELEASE, "herald-gateway")]
            sns_env = dict(common, PORT=str(port), SNS_TOPIC_ARN=TOPIC, AWS_ENDPOINT_URL=f"http://127.0.0.1:{sink_port}",
                           AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
            row = {"round": r}
            row["baseline"] = run_server("baseline", baseline_cmd, {}, port, args.duration, args.connections, script)
            row["gateway"] = run_server("gateway", gateway_cmd, sns_env, port, args.duration, args.connections, script, sink_port)
            lean_env = dict(sns_env, SNS_CLIENT="lean")
            row["lean"] = run_server("gateway, lean", gateway_cmd, lean_env, port, args.duration, args.connections, script, sink_port)
            null_cmd = [os.path.join(RELEASE, "examples", "bench_gateway_null")]
            row["null"] = run_server("gateway, null publisher", null_cmd, dict(common, PORT=str(port)), port, args.duration, args.connections, script)
            row["gateway_c1"] = run_server("gateway", gateway_cmd, sns_env, port, args.duration, 1, script, sink_port)
            row["baseline_c1"] = run_server("baseline", baseline_cmd, {}, port, args.duration, 1, script)
            data_dir = os.path.join(work, f"data-{r}")
            emb_env = dict(common, PORT=str(port), HERALD_DATA_DIR=data_dir, DELIVERY="console")
            row["embedded"] = run_server("embedded", gateway_cmd, emb_env, port, args.duration, args.connections, script)
            rows.append(row)
            report_round(row)
    finally:
        stop(sink)
        shutil.rmtree(work, ignore_errors=True)
    report_medians(rows)


def report_round(row):
    b, g, gc, bc, e, n, l = (row["baseline"], row["gateway"], row["gateway_c1"], row["baseline_c1"], row["embedded"],
                             row["null"], row["lean"])
    print(f"\nround {row['round']}")
    print(f"  {'':24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8} {'non-2xx':>8}")
    for name, x in (("baseline", b), ("gateway (SNS)", g), ("gateway (SNS, lean)", l), ("gateway, null publisher", n),
                    ("embedded (durable)", e),
                    ("baseline, 1 conn", bc), ("gateway, 1 conn", gc)):
        print(f"  {name:24} {x['rps']:9.0f} {x['p50']:8.3f} {x['p99']:8.3f} {x['rss']:8.1f} {x['non2xx']:8d}")
    for name, x in (("sdk", g), ("lean", l)):
        print(f"  {name}: SNS calls per accepted message {x['calls_per_msg']:.3f}; accepted {x['accepted']}, reached the sink {x['sink_messages']}")
    sys.stdout.flush()


def ratio_lines(rows):
    med = lambda f: statistics.median(f(r) for r in rows)
    return [
        ("gateway/baseline throughput", med(lambda r: r["gateway"]["rps"] / r["baseline"]["rps"]), ">= 0.33"),
        ("gateway/baseline p99", med(lambda r: r["gateway"]["p99"] / r["baseline"]["p99"]), "<= 3"),
        ("gateway peak RSS (MiB)", med(lambda r: r["gateway"]["rss"]), "<= 32"),
        ("SNS calls per accepted message", med(lambda r: r["gateway"]["calls_per_msg"]), "<= 0.15"),
        ("1-conn median latency gap (ms)", med(lambda r: r["gateway_c1"]["p50"] - r["baseline_c1"]["p50"]), "<= 1.5"),
        ("lean-client gateway/baseline throughput", med(lambda r: r["lean"]["rps"] / r["baseline"]["rps"]), ">= 0.33"),
        ("lean-client gateway/baseline p99", med(lambda r: r["lean"]["p99"] / r["baseline"]["p99"]), "<= 3"),
        ("lean-client peak RSS (MiB)", med(lambda r: r["lean"]["rss"]), "<= 32"),
        ("lean-client SNS calls per accepted message", med(lambda r: r["lean"]["calls_per_msg"]), "<= 0.15"),
        ("null-publisher/baseline throughput", med(lambda r: r["null"]["rps"] / r["baseline"]["rps"]), ""),
        ("SNS share of gateway time per request", med(lambda r: 1 - r["gateway"]["rps"] / r["null"]["rps"]), ""),
        ("embedded durable accepts/s", med(lambda r: r["embedded"]["rps"]), ">= 5000"),
        ("embedded/baseline throughput", med(lambda r: r["embedded"]["rps"] / r["baseline"]["rps"]), ""),
        ("baseline req/s", med(lambda r: r["baseline"]["rps"]), ""),
        ("gateway req/s", med(lambda r: r["gateway"]["rps"]), ""),
        ("all accepted reached the sink",
         min(min(r[k]["sink_messages"] - r[k]["accepted"] for k in ("gateway", "lean")) for r in rows) >= 0, "True"),
    ]


def report_medians(rows):
    print(f"\nmedians over {len(rows)} round(s)")
    for name, value, target in ratio_lines(rows):
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"  {name:44} {shown:>10}   target {target}")


if __name__ == "__main__":
    main()
